"""Suggested error tags from the shape of a correction."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.method.error_taxonomy import diff_labels

LIVER, SPLEEN, KL, KR = ORGAN_IDS["liver"], ORGAN_IDS["spleen"], ORGAN_IDS["kidney_left"], ORGAN_IDS["kidney_right"]


def _base():
    labels = np.zeros((60, 50, 40), np.uint8)
    labels[5:30, 5:35, 5:35] = LIVER
    labels[40:55, 10:25, 10:30] = SPLEEN
    return labels


def _tags(ai, revised, organ="liver"):
    return next(d for d in diff_labels(ai, revised, 0.001) if d.organ == organ).suggested


def test_missed_region_and_leakage_and_boundary():
    truth = _base()
    ai = truth.copy()
    ai[5:15, 5:15, 5:15] = 0  # a 10^3 chunk missed
    assert _tags(ai, truth) == ["missed_region"]
    ai = truth.copy()
    ai[30:38, 10:20, 10:20] = LIVER  # 8 voxels deep into the neighbourhood
    assert _tags(ai, truth) == ["leakage"]
    ai = truth.copy()
    ai[4, 5:35, 10:30] = LIVER  # one voxel outside the surface
    assert _tags(ai, truth) == ["boundary"]


def test_missing_hallucinated_confusion_fragment():
    truth = _base()
    ai = truth.copy()
    ai[ai == SPLEEN] = 0
    assert _tags(ai, truth, "spleen") == ["missing_organ"]
    assert _tags(truth, np.where(truth == SPLEEN, 0, truth).astype(np.uint8), "spleen") == ["hallucinated_organ"]
    ai = truth.copy()
    ai[40:55, 10:25, 10:30] = LIVER  # the spleen labelled as liver
    assert "organ_confusion" in _tags(ai, truth)
    ai = truth.copy()
    ai[40:44, 40:44, 36:39] = LIVER  # a stray piece far from the liver
    assert _tags(ai, truth) == ["fragment"]


def test_laterality_swap_and_extent_protocol():
    truth = np.zeros((60, 40, 60), np.uint8)
    truth[5:15, 10:20, 20:40] = KR
    truth[45:55, 10:20, 20:40] = KL
    swapped = np.where(truth == KR, KL, np.where(truth == KL, KR, 0)).astype(np.uint8)
    assert _tags(swapped, truth, "kidney_left") == ["laterality_swap"]
    ai = truth.copy()
    ai[5:15, 10:20, 38:40] = 0  # the last slices of the right kidney left out
    assert _tags(ai, truth, "kidney_right") == ["extent_protocol"]


def test_untouched_organs_suggest_nothing():
    truth = _base()
    assert _tags(truth, truth) == [] and _tags(truth, truth, "pancreas") == []


@pytest.mark.parametrize("organ", ["liver"])
def test_volumes_in_ml(organ):
    truth = _base()
    ai = truth.copy()
    ai[5:15, 5:15, 5:15] = 0
    d = next(d for d in diff_labels(ai, truth, 0.0027) if d.organ == organ)
    assert d.voxels_added == 1000 and d.ml_added == pytest.approx(2.7) and d.voxels_removed == 0


def test_a_volume_stored_with_its_axes_turned_gets_the_same_suggestions():
    """The craniocaudal axis comes from the affine: the last slices of an organ left out read as
    extent_protocol whichever array axis runs head to foot."""
    from atlasloop.imaging.volume import Volume
    from atlasloop.method.error_taxonomy import axial_axis, diff_volumes

    truth = np.zeros((60, 40, 60), np.uint8)
    truth[5:15, 10:20, 20:40] = KR
    ai = truth.copy()
    ai[5:15, 10:20, 38:40] = 0
    spacing = np.diag([0.8, 0.8, 2.5, 1.0])
    straight = [
        d.suggested for d in diff_volumes(Volume(ai, spacing), Volume(truth, spacing)) if d.organ == "kidney_right"
    ]
    # stored z, x, y: array axis 0 runs along RAS z
    turned_affine = spacing[:, [2, 0, 1, 3]]
    assert axial_axis(turned_affine) == 0

    def turn(a):
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    turned = [
        d.suggested
        for d in diff_volumes(Volume(turn(ai), turned_affine), Volume(turn(truth), turned_affine))
        if d.organ == "kidney_right"
    ]
    assert straight == turned == [["extent_protocol"]]
