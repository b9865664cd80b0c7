"""The simulated annotator and the measures: corrections only where it looks, effort that grows
with the slices touched, strategies compared on the same labels."""

from __future__ import annotations

import numpy as np

from atlasloop.common.domain import ErrorTag
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.volume import Volume
from atlasloop.loop.annotator import EffortModel, NativeBox, SimulatedAnnotator, axial_axis, native_box
from atlasloop.loop.evaluation import Plan, compare, detection, dice_at, mean_dice

LIVER, SPLEEN = ORGAN_IDS["liver"], ORGAN_IDS["spleen"]


def _case(shift: int = 0) -> tuple[Volume, Volume]:
    truth = np.zeros((40, 40, 20), np.uint8)
    truth[5:20, 5:20, 5:15] = LIVER
    truth[25:35, 25:35, 5:15] = SPLEEN
    ai = truth.copy()
    ai[5:20, 5:20, 5:15] = 0
    ai[5 + shift : 20, 5:20, 5:15] = LIVER  # part of the liver missed
    ai[25:35, 25:35, 5:15] = 0  # the spleen missed entirely
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    return Volume(ai, affine), Volume(truth, affine)


def test_guided_revision_fixes_only_inside_regions_and_tags_what_it_fixed():
    ai, truth = _case(shift=5)
    annotator = SimulatedAnnotator(miss_rate=0.0)
    liver_box = NativeBox("liver", (4, 4, 4), (20, 20, 15))
    revision = annotator.revise(ai, truth, [liver_box])
    assert np.array_equal(revision.labels.array == LIVER, truth.array == LIVER)
    assert not (revision.labels.array == SPLEEN).any()  # not looked at, not fixed
    assert revision.organs == ["liver"]
    assert revision.tags == [("liver", ErrorTag.MISSED_REGION)]
    everywhere = annotator.revise(ai, truth, None)
    assert np.array_equal(everywhere.labels.array, truth.array)
    assert ("spleen", ErrorTag.MISSING_ORGAN) in everywhere.tags
    assert everywhere.minutes > revision.minutes  # more slices read and edited


def test_effort_counts_slices_along_the_patients_axis():
    effort = EffortModel()
    assert effort.minutes(0, 0) == effort.open_case
    assert effort.minutes(10, 4) == effort.open_case + 10 * effort.inspect_slice + 4 * effort.edit_slice
    lps = np.array([[0, 0, -3.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    assert axial_axis(np.diag([2.0, 2.0, 3.0, 1.0])) == 2 and axial_axis(lps) == 1


def test_world_boxes_map_onto_native_voxels():
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10, -10, 0]
    box = native_box("liver", (-6.0, -6.0, 3.0), (0.0, 2.0, 9.0), affine, (40, 40, 20), pad=0)
    assert box.lo == (2, 2, 1) and box.hi == (5, 6, 3)


def test_an_overlooked_region_stays_wrong():
    ai, truth = _case(shift=5)
    revision = SimulatedAnnotator(miss_rate=1.0).revise(ai, truth, [NativeBox("liver", (0, 0, 0), (39, 39, 19))])
    assert revision.regions_overlooked == 1 and np.array_equal(revision.labels.array, ai.array)


def test_detection_and_strategies_on_known_errors():
    cases = {f"c{i}": _case(shift=i) for i in range(4)}
    ai = {c: v[0] for c, v in cases.items()}
    truth = {c: v[1] for c, v in cases.items()}
    boxes = {c: [NativeBox("spleen", (24, 24, 4), (35, 35, 15))] for c in cases}
    found = detection(ai, truth, boxes)
    assert 0 < found.sensitivity < 1 and found.precision > 0.5
    plans = {"attention": Plan(sorted(cases), boxes), "uncertainty": Plan(sorted(cases), {})}
    curves = compare(ai, truth, plans, seeds=(0, 1), budget_min=100)
    assert {c.strategy for c in curves} == {"attention", "uncertainty", "random"} and len(curves) == 6
    for curve in curves:
        assert curve.dice[0] == mean_dice(ai, truth) and curve.minutes == sorted(curve.minutes)
        assert dice_at(curve, 0) == curve.dice[0]
    random_curve = next(c for c in curves if c.strategy == "random")
    assert random_curve.dice[-1] == 1.0  # a full read fixes everything it opens
