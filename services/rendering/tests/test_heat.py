"""The heat overlay's fast paths give the pictures the direct computation gives: crop coordinates
as outer sums of one composed affine (not a 3x3 solve per pixel), and blending over the drawn box
with dense operations (not gathered through a mask)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from atlasloop.imaging.compact import Cropped
from atlasloop.imaging.display import PLANE_AXIS, RasVolume, slice_geometry
from atlasloop.rendering import layers
from atlasloop.rendering.core import RenderingCore
from atlasloop.rendering.sampling import sample_slice
from atlasloop.rendering.volumes import AttentionSet


def _direct_heat(attention, organ, ct, geometry):
    """Every displayed voxel to world to the crop's grid, each by its own solve."""
    crop = attention.organs[organ]
    heat = np.zeros((len(geometry.rows), len(geometry.cols)), np.float32)
    rr, cc = np.meshgrid(geometry.rows, geometry.cols, indexing="ij")
    ijk = np.empty((3, rr.size))
    axis = PLANE_AXIS[geometry.plane]
    ijk[axis], ijk[geometry.row_axis], ijk[geometry.col_axis] = geometry.index, rr.ravel(), cc.ravel()
    world = ct.affine[:3, :3] @ ijk + ct.affine[:3, 3:4]
    inside = np.linalg.solve(attention.affine[:3, :3], world - attention.affine[:3, 3:4])
    inside -= np.array([lo for lo, _ in crop.box], dtype=np.float64)[:, None]
    values = ndimage.map_coordinates(crop.data, inside, order=1, cval=0.0, output=np.float32)
    heat[:] = values.reshape(rr.shape) / 255.0
    return heat


def _direct_blend(rgb, heat, size):
    resized = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    shown = resized > 1e-3
    colors = layers.HEAT_LUT[np.clip((resized[shown] * 255).astype(np.int32), 0, 255)]
    alpha = layers.HEAT_ALPHA * np.clip(0.35 + resized[shown], 0, 1)[:, None]
    rgb[shown] = (1 - alpha) * rgb[shown] + alpha * colors


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_heat_on_a_slice_equals_the_direct_computation_on_a_turned_coarser_grid(plane):
    rng = np.random.default_rng(5)
    ct = RasVolume(np.zeros((60, 50, 40), np.int16), np.diag([0.8, 0.8, 1.5, 1.0]))
    # the attention grid: coarser, axes permuted and one flipped, shifted by a fraction of a voxel
    turned = np.array([[0, 0, -3.0, 40.0], [2.4, 0, 0, 1.3], [0, 1.9, 0, -0.7], [0, 0, 0, 1]])
    crop = Cropped(((2, 14), (1, 20), (3, 15)), rng.integers(1, 256, (12, 19, 12), dtype=np.uint8))
    attention = AttentionSet((16, 24, 18), turned, {"liver": crop}, [], 0)
    core = RenderingCore(source=None, store=None, max_size_px=1024, max_salient=8)
    drawn = 0
    for index in range(0, ct.array.shape[PLANE_AXIS[plane]], 3):
        geometry = slice_geometry(ct.array.shape, ct.spacing, plane, index)
        fast = core.heat(attention, "liver", ct, geometry)
        assert np.allclose(fast, _direct_heat(attention, "liver", ct, geometry), atol=1e-5)
        drawn += int((fast > 0).sum())
    assert drawn > 0  # the crop lies across the slices


def test_blending_over_the_drawn_box_equals_blending_through_the_mask():
    rng = np.random.default_rng(6)
    heat = np.zeros((40, 30), np.float32)
    heat[5:25, 8:20] = rng.random((20, 12), dtype=np.float32)
    base = rng.random((40, 30, 3), dtype=np.float32) * 255
    for size in ((30, 40), (60, 80)):  # drawn as is, and enlarged
        untouched = np.repeat(np.asarray(Image.fromarray(base[..., 0]).resize(size))[..., None], 3, axis=2)
        fast, direct = untouched.copy(), untouched.copy()
        layers.draw_heat(fast, heat, size)
        _direct_blend(direct, heat, size)
        assert np.allclose(fast, direct, atol=1e-3)
        assert (fast != untouched).any(axis=2).sum() > 100  # the heat was drawn


@pytest.mark.parametrize("oblique", [False, True])
def test_slice_sampling_equals_map_coordinates_inside_at_the_edges_and_outside(oblique):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, (9, 7, 5), dtype=np.uint8)
    to_map = np.array([[0, 0.4, 0, -1.0], [-0.5, 0, 0, 6.5], [0, 0, 0.25, 0.0], [0, 0, 0, 1]])
    if oblique:  # a grid turned by 20 degrees about the normal: the general path
        c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
        to_map = to_map @ np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    rows, cols = np.arange(-3, 30), np.arange(-4, 22)  # well past the map on every side
    sampled = 0
    for index in range(-2, 22):
        got = sample_slice(data, to_map, 2, index, 0, rows, 1, cols)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        ijk = np.stack([rr.ravel(), cc.ravel(), np.full(rr.size, index), np.ones(rr.size)])
        want = ndimage.map_coordinates(data, (to_map @ ijk)[:3], order=1, cval=0.0, output=np.float32)
        assert np.allclose(got, want.reshape(rr.shape), atol=1e-3)
        sampled += int((want > 0).sum())
    assert got.shape == (rows.size, cols.size) and sampled > 500
