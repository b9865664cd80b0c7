"""Attention regions: components with voxel and world boxes, volume, heat and dominant signal."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.compact import Cropped
from atlasloop.method import reference
from atlasloop.method.regions import find_regions


def test_two_components_sorted_by_heat_with_world_boxes():
    shape = (30, 30, 30)
    a = np.zeros(shape, np.uint8)
    a[2:9, 2:9, 2:9] = 255  # disagreement: inconsistency region of 7^3
    zero = np.zeros(shape, np.uint8)
    seg = {"liver": np.zeros(shape, bool), "stomach": np.zeros(shape, bool)}
    seg["liver"][18:26, 18:26, 18:26] = True
    seg["stomach"][22:28, 22:28, 22:28] = True  # overlap region 4^3
    attention = reference.organ_attention(
        "liver",
        [Cropped.of(a), Cropped.of(zero)],
        [Cropped.of(zero), Cropped.of(zero)],
        {k: Cropped.of(v) for k, v in seg.items()},
        shape,
    )
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10, -20, 5]
    regions = find_regions(attention, affine)
    # most total heat first: 343 voxels at 0.5 outweigh 64 voxels at 1.0
    assert [r.dominant_signal for r in regions] == ["inconsistency", "overlap"]
    disagreement, overlap_region = regions
    assert overlap_region.min_voxel == (22, 22, 22) and overlap_region.max_voxel == (25, 25, 25)
    assert overlap_region.min_mm == (34.0, 24.0, 71.0)
    assert disagreement.voxels == 343 and disagreement.volume_ml == pytest.approx(343 * 12 / 1000)
    assert disagreement.peak_heat == pytest.approx(0.5) and overlap_region.peak_heat == 1.0
