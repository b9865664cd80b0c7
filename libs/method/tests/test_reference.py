"""Reference mode on cases small enough to work out on paper, and against the dense specification."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from atlasloop.imaging.compact import Cropped
from atlasloop.method import reference
from atlasloop.method.reference_dense import organ_attention_dense

SHAPE = (14, 14, 14)


def _cube(lo, hi, value=255, dtype=np.uint8):
    a = np.zeros(SHAPE, dtype)
    a[lo:hi, lo:hi, lo:hi] = value
    return a


def _crops(*arrays):
    return [Cropped.of(a) for a in arrays]


def _attention(organ, soft, entropy, pseudo=None):
    pseudo = {k: Cropped.of(v) for k, v in (pseudo or {}).items()}
    return reference.organ_attention(organ, _crops(*soft), _crops(*entropy), pseudo, SHAPE)


def test_disagreement_cube_is_found_with_std_one_half():
    # member A says 1.0 in a 6^3 cube, member B says 0: std = 0.5 > 0.1; the opening keeps the cube
    zero = np.zeros(SHAPE, np.uint8)
    result = _attention("liver", [_cube(4, 10), zero], [zero, zero])
    assert result.region_voxels == 6**3
    assert np.all(result.inconsistency[result.region] == 0.5)
    assert result.stored_sum == 6**3 * 255  # heat 0.5 / max 0.5 = 1 everywhere in the cube
    assert reference.case_priority([result]) == 216


def test_opening_removes_structures_thinner_than_five_voxels():
    zero = np.zeros(SHAPE, np.uint8)
    slab = np.zeros(SHAPE, np.uint8)
    slab[2:12, 2:12, 5:9] = 255  # 4 voxels thick: two erosions leave nothing
    assert _attention("liver", [slab, zero], [zero, zero]).region_voxels == 0
    slab[2:12, 2:12, 5:10] = 255  # 5 thick survives as its full self
    assert _attention("liver", [slab, zero], [zero, zero]).region_voxels == 10 * 10 * 5


def test_uncertainty_threshold_is_strict_and_uses_the_member_mean():
    soft = [_cube(4, 9, 128), _cube(4, 9, 128)]
    below = _attention("spleen", soft, [_cube(4, 9, 12), _cube(4, 9, 13)])  # mean 12.5/255 = 0.049
    above = _attention("spleen", soft, [_cube(4, 9, 13), _cube(4, 9, 13)])  # 13/255 = 0.051
    assert below.region_voxels == 0 and above.region_voxels == 125
    assert above.uncertainty[above.region][0] == pytest.approx(13 / 255)


def test_overlap_uses_only_non_vessel_structures():
    liver, stomach, aorta = _cube(2, 6, 1, bool), _cube(4, 8, 1, bool), _cube(5, 7, 1, bool)
    zero = np.zeros(SHAPE, np.uint8)
    pseudo = {"liver": liver, "stomach": stomach, "aorta": aorta}
    liver_result = _attention("liver", [zero, zero], [zero, zero], pseudo)
    assert liver_result.region_voxels == 8  # liver meets stomach in 2^3; aorta does not count
    aorta_result = _attention("aorta", [zero, zero], [zero, zero], pseudo)
    assert aorta_result.region_voxels == 8  # aorta meets stomach on [5:7]^3, which holds its liver contact
    assert int(aorta_result.overlap.sum()) == int((aorta & (liver | stomach)).sum())


def test_heat_is_normalised_and_truncated_when_stored():
    zero = np.zeros(SHAPE, np.uint8)
    a = _cube(1, 7)  # disagreement 0.5 on [1:7]^3
    pseudo = {"liver": _cube(9, 13, 1, bool), "stomach": _cube(10, 13, 1, bool)}  # overlap 1.0 on [10:13]^3
    result = _attention("liver", [a, zero], [zero, zero], pseudo)
    full = result.full(SHAPE)
    assert full[3, 3, 3] == 127  # 0.5 * 255 = 127.5, truncated
    assert full[11, 11, 11] == 255
    assert set(np.unique(full)) == {0, 127, 255}


def test_nothing_to_attend_gives_zeros_never_nan():
    zero = np.zeros(SHAPE, np.uint8)
    result = _attention("pancreas", [zero, zero, zero], [zero, zero, zero])
    assert result.region_voxels == 0 and result.stored_sum == 0
    faint = _attention("pancreas", [_cube(4, 9, 3), zero], [_cube(4, 9, 2), zero])  # under both thresholds
    assert faint.region_voxels == 0 and not np.isnan(faint.heat).any()


def test_one_member_has_no_inconsistency():
    result = _attention("liver", [_cube(4, 10)], [_cube(4, 10, 40)])
    assert not result.inconsistency.any()
    assert result.region_voxels == 6**3  # from uncertainty 40/255 alone


def test_priority_ordering_and_stable_ties():
    zero = np.zeros(SHAPE, np.uint8)
    big = _attention("liver", [_cube(2, 10), zero], [zero, zero])
    small = _attention("spleen", [_cube(2, 7), zero], [zero, zero])
    none = _attention("stomach", [zero, zero], [zero, zero])
    assert reference.organ_order([small, none, big]) == ["liver", "spleen"]
    assert reference.rank_cases({"c1": 5, "c2": 9, "c3": 5, "c4": 0}) == ["c2", "c1", "c3", "c4"]


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_dense_specification_voxel_for_voxel(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 36, 30)

    def blob(center, radius, noise):
        grid = np.indices(shape).transpose(1, 2, 3, 0)
        d = np.linalg.norm((grid - center) / radius, axis=-1)
        p = np.clip(1.2 - d + ndimage.gaussian_filter(rng.standard_normal(shape), 2) * noise, 0, 1)
        return p

    truth_center = np.array([20, 18, 15])
    members = [blob(truth_center + rng.integers(-3, 4, 3), 9 + rng.uniform(-2, 2), 0.3) for _ in range(3)]
    soft = [(np.where(ndimage.binary_dilation(p > 0.5, iterations=1), p, 0) * 255).astype(np.uint8) for p in members]
    ent = [(np.where(p > 0, -p * np.log(np.where(p > 0, p, 1)), 0) * 255).astype(np.uint8) for p in members]
    segs = {"liver": np.mean(members, axis=0) > 0.5, "stomach": blob(truth_center + 8, 6, 0.1) > 0.5}
    stored, region = organ_attention_dense("liver", soft, ent, segs)
    fast = reference.organ_attention(
        "liver",
        [Cropped.of(s) for s in soft],
        [Cropped.of(e) for e in ent],
        {k: Cropped.of(v) for k, v in segs.items()},
        shape,
    )
    assert np.array_equal(fast.full(shape), stored)
    assert fast.region_voxels == int(region.sum()) > 0
