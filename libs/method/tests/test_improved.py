"""Improved-mode signals, case scorers and plausibility checks."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.compact import Cropped
from atlasloop.method import improved, plausibility


def test_mutual_information_is_zero_when_members_agree_and_high_when_they_split():
    agree = np.full((3, 4, 4, 4), 0.5)
    split = np.stack([np.zeros((4, 4, 4)), np.ones((4, 4, 4)), np.zeros((4, 4, 4))])
    assert improved.mutual_information_map(agree).max() == pytest.approx(0.0, abs=1e-9)
    assert improved.mutual_information_map(split).min() == pytest.approx(0.918, abs=1e-3)  # H_b(1/3) bits
    assert improved.binary_entropy_map(agree).max() == pytest.approx(1.0)


def test_unknown_scorer_names_are_refused():
    with pytest.raises(ValueError, match="unknown scorers"):
        improved.ImprovedConfig(signals=("telepathy",))
    with pytest.raises(ValueError, match="unknown scorers"):
        improved.ImprovedConfig(weights={"vibes": 1.0})


def _prediction(masks: dict[str, np.ndarray], spacing=2.0):
    affine = np.diag([spacing, spacing, spacing, 1.0])
    return plausibility.Prediction(
        {k: Cropped.of(v) for k, v in masks.items()}, affine, {k: Cropped.of(v) for k, v in masks.items()}
    )


def _box(shape, lo, hi):
    a = np.zeros(shape, bool)
    a[tuple(slice(low, high) for low, high in zip(lo, hi, strict=True))] = True
    return a


def test_laterality_missing_volume_and_contact_flags():
    shape = (60, 40, 40)
    # RAS: larger x is the patient's right. The "left" kidney sits at high x: swapped.
    left = _box(shape, (40, 10, 10), (50, 20, 25))
    right = _box(shape, (5, 10, 10), (15, 20, 25))
    flags = plausibility.run_checks(_prediction({"kidney_left": left, "kidney_right": right}))
    assert "laterality" in flags["kidney_left"] and "laterality" in flags["kidney_right"]
    assert flags["liver"] == ["missing"] and "gall_bladder" not in flags  # optional organ
    touching = _box(shape, (15, 10, 10), (25, 20, 25))
    flags = plausibility.run_checks(_prediction({"kidney_left": touching, "kidney_right": right}))
    assert "contact" in flags["kidney_left"]
    huge_spleen = _box(shape, (0, 0, 0), (60, 40, 40))  # 96,000 voxels of 8 mm^3 = 768 mL
    assert "volume" in plausibility.run_checks(_prediction({"spleen": huge_spleen}))["spleen"]


def test_fragmented_members_are_flagged():
    shape = (30, 30, 30)
    two = _box(shape, (2, 2, 2), (10, 10, 10)) | _box(shape, (20, 20, 20), (26, 26, 26))
    assert plausibility.fragments(_prediction({"liver": two}))["liver"] == ["fragmented"]
    assert plausibility.fragments(_prediction({"liver": _box(shape, (2, 2, 2), (10, 10, 10))})) == {}
