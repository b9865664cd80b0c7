"""An external label map scored against the ensemble as one more committee member: a correct one
raises nothing, a swapped kidney and a missing organ are flagged, on any grid of the same scan."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import Volume
from atlasloop.method.external import score_external
from atlasloop.method.simulate import ErrorModel, simulate


def _case(seed: int = 0):
    _, labels = render(np.random.default_rng([21, seed]), SITES["A"], 4.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(seed), ErrorModel(shared_error_rate=0.0))
    return labels, output


def _flags(score) -> dict[str, list[str]]:
    return {o.organ: o.flags for o in score.organs if o.flags}


def test_the_truth_is_not_flagged_and_agrees_with_the_ensemble():
    labels, output = _case()
    score = score_external(output, labels)
    assert score.coverage == 1.0
    assert "laterality" not in str(_flags(score)) and "missing" not in str(_flags(score))
    liver = next(o for o in score.organs if o.organ == "liver")
    assert liver.dice_vs_ensemble > 0.8 and liver.volume_ml > 0


def test_a_swapped_kidney_and_a_missing_organ_are_flagged():
    labels, output = _case(1)
    array = labels.array.copy()
    left, right = array == ORGAN_IDS["kidney_left"], array == ORGAN_IDS["kidney_right"]
    array[left], array[right] = ORGAN_IDS["kidney_right"], ORGAN_IDS["kidney_left"]  # names swapped
    array[array == ORGAN_IDS["spleen"]] = 0  # the spleen forgotten
    flags = _flags(score_external(output, labels.with_array(array)))
    assert {"laterality", "disagrees"} <= set(flags["kidney_left"]) and "laterality" in flags["kidney_right"]
    assert {"missing", "disagrees"} <= set(flags["spleen"])
    assert flags["liver"] == ["contact"]  # it touches a "left kidney" now: the swap again
    assert not {"stomach", "aorta", "postcava", "pancreas"} & set(flags)  # what is right stays unflagged


def test_any_grid_of_the_scan_will_do_but_another_scan_is_refused():
    labels, output = _case(2)
    image = nib.Nifti1Image(labels.array, labels.affine)
    to_pls = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(labels.affine), nib.orientations.axcodes2ornt(("P", "L", "S"))
    )
    turned = image.as_reoriented(to_pls)  # the same scan stored with its axes swapped and flipped
    reoriented = Volume(np.asarray(turned.dataobj), turned.affine)
    assert not np.allclose(reoriented.affine, labels.affine)
    as_is, moved = score_external(output, labels), score_external(output, reoriented)
    assert [o.dice_vs_ensemble for o in moved.organs] == [o.dice_vs_ensemble for o in as_is.organs]
    elsewhere = labels.affine.copy()
    elsewhere[:3, 3] += 1000.0  # a label map of some other scan
    with pytest.raises(ImageError, match="not a label map of this case"):
        score_external(output, Volume(labels.array, elsewhere))
