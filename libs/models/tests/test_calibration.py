"""Temperature scaling per organ and test-time mirroring: an over-confident member is cooled down
and its calibration error falls out of sample; the ranking of voxels does not move; mirrored
inference averages the flipped passes' logits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from atlasloop.models.architectures import build, config
from atlasloop.models.calibration import calibrate, ece, fit_temperature, logits_of, near_voxels, sigmoid
from atlasloop.models.ensemble import InferenceConfig, member_logits, member_probabilities, mirror_sets
from atlasloop.models.records import LoadedModel, Manifest


def _overconfident(rng, n, scale):
    """Labels drawn from true probabilities; the member reports logits ``scale`` times too large."""
    true_logit = rng.normal(0.0, 2.0, n)
    truth = rng.random(n) < sigmoid(true_logit)
    return true_logit * scale, truth


def test_the_fitted_temperature_undoes_over_and_under_confidence():
    rng = np.random.default_rng(0)
    for scale in (3.0, 0.5):
        logits, truth = _overconfident(rng, 200_000, scale)
        assert fit_temperature(logits, truth.astype(float)) == pytest.approx(scale, rel=0.05)


def test_calibration_lowers_the_error_out_of_sample_and_keeps_the_ranking():
    rng = np.random.default_rng(1)
    cases = [_overconfident(rng, 50_000, 4.0) for _ in range(4)]
    result = calibrate([c[0] for c in cases], [c[1] for c in cases])
    assert result.held_out and result.temperature == pytest.approx(4.0, rel=0.1)
    assert result.ece_after < result.ece_before / 3 and result.ece_after < 0.02
    z = cases[0][0]
    assert np.array_equal(np.argsort(sigmoid(z)), np.argsort(sigmoid(z / result.temperature)))
    assert result.applied  # measured out of sample, and lower: published
    single = calibrate([cases[0][0]], [cases[0][1]])
    assert not single.held_out and single.ece_after < single.ece_before
    assert not single.applied  # lower on the one case it was fitted on proves nothing: T = 1


def test_a_temperature_that_does_not_help_on_other_cases_is_not_applied():
    """Cases that disagree: the folds (cases 0, 2 and cases 1, 3) are over- and under-confident,
    so each fold's temperature makes the other worse; the fit is recorded and not applied."""
    rng = np.random.default_rng(2)
    cases = [_overconfident(rng, 50_000, scale) for scale in (3.0, 0.5, 3.0, 0.5)]
    result = calibrate([c[0] for c in cases], [c[1] for c in cases])
    assert result.held_out and result.ece_after >= result.ece_before and not result.applied


def test_ece_and_the_voxels_looked_at():
    assert ece(np.array([0.9] * 10), np.array([True] * 9 + [False])) == pytest.approx(0.0, abs=1e-12)
    assert ece(np.array([0.9] * 10), np.array([False] * 10)) == pytest.approx(0.9)
    p = np.zeros((40, 40, 40))
    truth = np.zeros_like(p, bool)
    truth[10:14, 10:14, 10:14] = True
    index = near_voxels(p, truth)
    assert index.size == 12**3  # the organ's box grown by 4 voxels, not the scan
    assert np.isfinite(logits_of(np.array([0.0, 1.0]))).all()


def _model(temperatures=None):
    cfg = config("unet", "tiny")
    torch.manual_seed(0)
    manifest = Manifest("unet", "v1", cfg.as_json(), {}, 3.0, (-200.0, 300.0), "", 0, temperatures=temperatures or {})
    return LoadedModel("unet", "v1", cfg, build(cfg).eval(), manifest)


def test_mirroring_averages_the_flipped_passes_and_temperatures_rescale_each_organ():
    model = _model()
    image = np.random.default_rng(2).normal(size=(24, 20, 16)).astype(np.float32)
    plain = InferenceConfig(overlap=0.25)
    assert mirror_sets((0, 2)) == [(), (0,), (2,), (0, 2)]
    with pytest.raises(ValueError):
        mirror_sets((0, 0))
    mirrored = member_logits(model, image, replace(plain, mirror_axes=(0, 2)))
    by_hand = (
        sum(
            torch.flip(member_logits(model, np.ascontiguousarray(np.flip(image, axes)), plain), [a + 1 for a in axes])
            for axes in mirror_sets((0, 2))
        )
        / 4
    )
    assert torch.allclose(mirrored, by_hand, atol=1e-5)
    assert not torch.allclose(mirrored, member_logits(model, image, plain), atol=1e-3)

    cooled = replace(model, manifest=replace(model.manifest, temperatures={"liver": 2.0}))
    logits = member_logits(model, image, plain)
    p = member_probabilities(cooled, image, plain)
    assert torch.allclose(p[5], torch.sigmoid(logits[5] / 2.0), atol=1e-6)  # liver is label 5
    assert torch.allclose(p[1], torch.sigmoid(logits[1]), atol=1e-6)  # the spleen untouched
    raw = member_probabilities(cooled, image, replace(plain, calibrated=False))
    assert torch.allclose(raw[5], torch.sigmoid(logits[5]))
