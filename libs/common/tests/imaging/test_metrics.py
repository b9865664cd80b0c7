"""Our metrics agree with MONAI's on random masks; empty cases have their documented values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from atlasloop.imaging import metrics


def _random_mask(rng, shape=(40, 36, 24)):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 3)
    return noise > np.quantile(noise, rng.uniform(0.6, 0.9))


def _onehot(mask):
    return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))


@pytest.mark.parametrize("seed", range(6))
def test_agree_with_monai(seed):
    rng = np.random.default_rng(seed)
    pred, truth = _random_mask(rng), _random_mask(rng)
    spacing = (0.8, 1.1, 2.5)
    y_pred, y = _onehot(pred), _onehot(truth)
    monai_dice = compute_dice(y_pred, y, include_background=False).item()
    monai_nsd = compute_surface_dice(
        y_pred, y, class_thresholds=[2.0], include_background=False, spacing=spacing
    ).item()
    monai_hd95 = compute_hausdorff_distance(y_pred, y, include_background=False, percentile=95, spacing=spacing).item()
    assert metrics.dice(pred, truth) == pytest.approx(monai_dice, abs=1e-6)
    assert metrics.nsd(pred, truth, spacing, 2.0) == pytest.approx(monai_nsd, abs=1e-6)
    assert metrics.hd95(pred, truth, spacing) == pytest.approx(monai_hd95, abs=1e-5)


def test_empty_cases_have_documented_values():
    empty, full = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    full[2:5, 2:5, 2:5] = True
    spacing = (1.0, 1.0, 1.0)
    assert (metrics.dice(empty, empty), metrics.nsd(empty, empty, spacing, 1), metrics.hd95(empty, empty, spacing)) == (
        1.0,
        1.0,
        0.0,
    )
    for a, b in ((empty, full), (full, empty)):
        assert metrics.dice(a, b) == 0.0 and metrics.nsd(a, b, spacing, 1) == 0.0
        assert math.isinf(metrics.hd95(a, b, spacing))


def test_spacing_matters_and_volumes_are_in_ml():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 5
    pred = np.roll(truth, 2, axis=2)
    near = metrics.hd95(pred == 5, truth == 5, (1, 1, 1))
    far = metrics.hd95(pred == 5, truth == 5, (1, 1, 3))
    assert far == pytest.approx(3 * near)
    liver = next(m for m in metrics.organ_metrics(pred, truth, (1.0, 1.0, 2.0)) if m.organ == "liver")
    assert liver.truth_ml == pytest.approx(1000 * 2 / 1000)
    assert liver.dice == pytest.approx(0.8)
