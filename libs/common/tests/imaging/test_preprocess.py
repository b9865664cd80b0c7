"""Preprocessing and its inverse: identical labels on the real CT, bounded memory at full size."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.preprocess import (
    PreprocessConfig,
    labels_to_model,
    model_grid,
    preprocess_image,
    to_native,
    window,
)
from atlasloop.imaging.volume import Volume, load_nifti


@pytest.fixture(scope="module")
def real(real_ct_dir):
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    return ct, seg.with_array(from_totalsegmentator(seg.array))


def test_model_grid_is_ras_and_1_5_mm(real):
    ct, _ = real
    pre = preprocess_image(ct)
    assert pre.image.dtype == np.float32 and pre.image.min() >= 0.0 and pre.image.max() <= 1.0
    affine = pre.grid.cropped_affine
    assert np.allclose(np.abs(np.diag(affine[:3, :3])), 1.5) and np.all(np.diag(affine[:3, :3]) > 0)
    assert all(c <= m for c, m in zip(pre.grid.cropped_shape, pre.grid.model_shape, strict=True))
    assert pre.grid.cropped_shape != pre.grid.model_shape  # the air around the body was cropped


def test_labels_forward_then_inverse_are_identical(real):
    ct, labels = real
    pre = preprocess_image(ct)
    model_labels = labels_to_model(labels, pre.grid)
    assert set(np.unique(model_labels)) == set(np.unique(labels.array))
    back = to_native(model_labels, pre.grid, order=0)
    assert np.array_equal(back.array, labels.array)
    assert np.allclose(back.affine, ct.affine)


def test_image_forward_then_inverse_within_interpolation_error(real):
    ct, _ = real
    config = PreprocessConfig()
    pre = preprocess_image(ct, config)
    back = to_native(pre.image, pre.grid, order=1, dtype=np.float32)
    expected = window(ct.array.astype(np.float32), config)
    # Outside the crop the inverse is 0, which is also the windowed value of air: compare everywhere.
    assert np.max(np.abs(back.array - expected)) < 1e-4


def test_anisotropic_lps_scan_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    affine = np.diag([-0.78, -0.78, 2.5, 1.0])
    affine[:3, 3] = [200, 180, -150]
    x, y, z = np.meshgrid(np.arange(160), np.arange(150), np.arange(40), indexing="ij")
    blob = ((x - 80) / 40) ** 2 + ((y - 70) / 30) ** 2 + ((z - 20) / 10) ** 2 <= 1
    hu = np.where(blob, 60, -100).astype(np.int16) + rng.integers(-5, 5, blob.shape).astype(np.int16)
    ct, labels = Volume(hu, affine), Volume(blob.astype(np.uint8) * 5, affine)
    pre = preprocess_image(ct)
    back = to_native(labels_to_model(labels, pre.grid), pre.grid, order=0)
    assert dice(back.array == 5, labels.array == 5) > 0.95
    shape, grid_affine = model_grid(ct.shape, ct.affine, 1.5)
    assert np.all(np.diag(grid_affine[:3, :3]) == 1.5)
    assert shape == (int(159 * 0.78 / 1.5) + 1, int(149 * 0.78 / 1.5) + 1, int(39 * 2.5 / 1.5) + 1)


def test_full_size_ct_resamples_within_a_few_copies():
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    ct = Volume(np.full((512, 512, 300), -1000, dtype=np.int16), affine)
    ct.array[100:400, 120:380, 20:280] = 40
    native_float_bytes = ct.array.size * 4
    tracemalloc.start()
    try:
        pre = preprocess_image(ct)
        forward_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        labels = to_native((pre.image > 0.5).astype(np.uint8), pre.grid, order=0)
        inverse_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels.shape == ct.shape
    assert forward_peak < 1.0 * native_float_bytes, forward_peak / 2**20
    assert inverse_peak < 1.0 * native_float_bytes, inverse_peak / 2**20
