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


def test_expected_dice_is_the_pseudo_labels_soft_dice_against_the_members_mean():
    pseudo = np.zeros((4, 4, 4), bool)
    pseudo[:2] = True  # 32 voxels
    sure = np.stack([pseudo.astype(np.float64)] * 3)
    assert improved.expected_dice(sure, pseudo) == pytest.approx(1.0)
    half = np.stack([pseudo * 1.0, pseudo * 0.0, pseudo * 0.5])  # mean 0.5 inside, 0 outside
    assert improved.expected_dice(half, pseudo) == pytest.approx(2 * 16 / (16 + 32))
    leak = sure.copy()
    leak[:, 2] = 0.5  # the members put half a slice's worth of belief beside the label
    assert improved.expected_dice(leak, pseudo) == pytest.approx(2 * 32 / (32 + 8 + 32))
    nothing = np.zeros((3, 4, 4, 4))
    assert improved.expected_dice(nothing, np.zeros((4, 4, 4), bool)) == 1.0
    assert improved.expected_dice(np.zeros((3, 0, 0, 0)), np.zeros((0, 0, 0), bool)) == 1.0
    with pytest.raises(ValueError, match="expected_dice_floor"):
        improved.ImprovedConfig(expected_dice_floor=1.5)


def test_the_gate_drops_organs_the_ensemble_expects_right_and_keeps_flagged_ones():
    from atlasloop.imaging.synth.phantom import render
    from atlasloop.imaging.synth.sites import SITES
    from atlasloop.method.case_scoring import score_case
    from atlasloop.method.simulate import ErrorModel, simulate

    _, labels = render(np.random.default_rng([11, 0]), SITES["B"], 4.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(0), ErrorModel())
    gated = score_case("c", output, "improved")
    ungated = score_case("c", output, "improved", improved.ImprovedConfig(expected_dice_floor=None))
    floor = improved.ERROR_MATTERS_DICE
    by_organ = {o.organ: o for o in gated.organs}
    dropped = [o for o in gated.organs if o.gated]
    kept = [o for o in gated.organs if not o.gated]
    assert dropped and kept  # the case has organs on both sides of the floor
    for o in dropped:
        assert o.expected_dice is not None and o.expected_dice >= floor and not o.flags and o.score == 0
    for o in kept:
        assert o.flags or (o.expected_dice is not None and o.expected_dice < floor)
    assert {r.organ for r in gated.regions} <= {o.organ for o in kept}
    assert not set(gated.organ_order()) & {o.organ for o in dropped}
    # turned off, every organ keeps its regions and score; the gated ones' regions are the difference
    assert not any(o.gated for o in ungated.organs)
    assert [r for r in ungated.regions if not by_organ[r.organ].gated] == gated.regions
    assert gated.priority == pytest.approx(sum(o.score for o in ungated.organs if not by_organ[o.organ].gated))
    assert gated.as_json()["organs"][0]["expected_dice"] == by_organ[gated.organs[0].organ].expected_dice


def test_a_plausibility_flag_keeps_an_organ_the_members_agree_on():
    """A swapped kidney the members all predict has expected Dice near 1: only its flag keeps it."""
    from atlasloop.method.reference import empty

    def evidence(flags):
        return improved.OrganEvidence(empty("kidney_left"), np.zeros((3, 0, 0, 0)), 150.0, 0.008, flags, 0.99)

    assert evidence([]).gated(0.9)
    assert not evidence(["laterality"]).gated(0.9)
    assert not evidence([]).gated(None)
    assert not evidence([]).gated(0.995)


def test_a_projects_volume_ranges_replace_the_adult_ones(tmp_path):
    from atlasloop.common.errors import InvalidInput

    shape = (40, 40, 40)
    child_spleen = _box(shape, (0, 0, 0), (10, 10, 10))  # 1000 voxels of 8 mm^3 = 8 mL: below adult 40
    adult = plausibility.run_checks(_prediction({"spleen": child_spleen}))
    assert "volume" in adult["spleen"]
    half_size = plausibility.scaled_volume_ranges(0.5)
    assert half_size["spleen"] == (5.0, 87.5)
    prediction = _prediction({"spleen": child_spleen})
    prediction.volume_ranges_ml = half_size
    assert "volume" not in plausibility.run_checks(prediction).get("spleen", [])
    path = tmp_path / "ranges.json"
    path.write_text('{"spleen": [5, 90]}')
    assert plausibility.read_volume_ranges(path)["spleen"] == (5.0, 90.0)
    for text, reason in [("[1, 2]", "expected"), ("{", "Expecting"), ('{"spleen": [5, "x"]}', "low, high")]:
        path.write_text(text)
        with pytest.raises(InvalidInput, match=reason):
            plausibility.read_volume_ranges(path)
    path.write_text(" " * (plausibility.MAX_RANGES_FILE_BYTES + 1))
    with pytest.raises(InvalidInput, match="at most"):
        plausibility.read_volume_ranges(path)


def test_expected_dice_offsets_are_the_median_residual_per_organ_clipped_and_only_with_enough_cases():
    pairs = {
        "aorta": [(0.78, 0.93), (0.80, 0.92), (0.70, 0.95)],  # residuals 0.15, 0.12, 0.25: median 0.15
        "liver": [(0.95, 0.40), (0.96, 0.94)],  # a missed liver must not be averaged in: median of two is the mean
        "spleen": [(0.90, 0.91)],  # one case is not enough
        "stomach": [(0.30, 0.95), (0.20, 0.97)],  # +0.71 clipped to the bound
    }
    offsets = improved.fit_expected_dice_offsets(pairs)
    assert offsets["aorta"] == pytest.approx(0.15)
    assert offsets["liver"] == pytest.approx(((0.40 - 0.95) + (0.94 - 0.96)) / 2)
    assert "spleen" not in offsets
    assert offsets["stomach"] == improved.OFFSET_BOUND
    assert improved.fit_expected_dice_offsets(pairs, min_cases=1)["spleen"] == pytest.approx(0.01)


def test_a_sets_offsets_move_the_gate_and_bad_offsets_are_refused():
    from atlasloop.method.reference import empty

    raw = improved.OrganEvidence(empty("aorta"), np.zeros((3, 0, 0, 0)), 40.0, 0.027, [], 0.80)
    assert not raw.gated(0.9)  # an aorta the set under-rates: kept on the raw value
    lifted = improved.OrganEvidence(empty("aorta"), np.zeros((3, 0, 0, 0)), 40.0, 0.027, [], 0.80, 0.14)
    assert lifted.calibrated_dice == pytest.approx(0.94) and lifted.gated(0.9)
    capped = improved.OrganEvidence(empty("aorta"), np.zeros((3, 0, 0, 0)), 40.0, 0.027, [], 0.95, 0.2)
    assert capped.calibrated_dice == 1.0
    config = improved.ImprovedConfig()
    assert dict(config.with_offsets({"aorta": 0.1}).expected_dice_offsets) == {"aorta": 0.1}
    assert (
        dict(improved.ImprovedConfig(calibrate_expected_dice=False).with_offsets({"aorta": 0.1}).expected_dice_offsets)
        == {}
    )
    with pytest.raises(ValueError, match="unknown organs"):
        config.with_offsets({"appendix": 0.1})
    with pytest.raises(ValueError, match="outside"):
        config.with_offsets({"aorta": 1.5})
    assert improved.offsets_of_set({"version": "v", "members": []}) == {}
    assert improved.offsets_of_set({"expected_dice_offsets": {"liver": -0.02}}) == {"liver": -0.02}
    with pytest.raises(ValueError, match="outside"):
        improved.offsets_of_set({"expected_dice_offsets": {"liver": float("nan")}})
    with pytest.raises(ValueError, match="object"):
        improved.offsets_of_set({"expected_dice_offsets": [0.1]})


def test_scoring_applies_the_offsets_to_the_gate_and_records_them():
    """The same stored prediction scored with and without an offset: the organ the offset lifts
    past the floor loses its regions and score; the raw expected Dice is unchanged."""
    from atlasloop.imaging.synth.phantom import render
    from atlasloop.imaging.synth.sites import SITES
    from atlasloop.method.case_scoring import score_case
    from atlasloop.method.simulate import ErrorModel, simulate

    _, labels = render(np.random.default_rng([11, 0]), SITES["B"], 4.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(0), ErrorModel())
    raw = score_case("c", output, "improved")
    with_regions = {r.organ for r in raw.regions}
    kept = [o for o in raw.organs if o.organ in with_regions and not o.flags and o.expected_dice is not None]
    assert kept
    target = max(kept, key=lambda o: o.expected_dice or 0.0)  # the kept organ nearest the floor
    lift = improved.ERROR_MATTERS_DICE - (target.expected_dice or 0.0) + 0.01
    assert 0 < lift <= improved.OFFSET_BOUND
    lifted = score_case("c", output, "improved", improved.ImprovedConfig().with_offsets({target.organ: lift}))
    by_organ = {o.organ: o for o in lifted.organs}
    assert by_organ[target.organ].gated and by_organ[target.organ].score == 0
    assert by_organ[target.organ].expected_dice == target.expected_dice
    assert not target.gated and target.score > 0
    assert not {r.organ for r in lifted.regions} & {target.organ}
    assert {r.organ for r in raw.regions} - {target.organ} == {r.organ for r in lifted.regions}
    document = lifted.as_json()["organs"]
    assert {o["organ"]: o["expected_dice_offset"] for o in document}[target.organ] == pytest.approx(lift)
    # organ_expected_dice (what training fits the offsets with) is the scoring's own number
    soft = [output.soft[m][target.organ] for m in output.members]
    assert improved.organ_expected_dice(target.organ, soft, output.pseudo, output.shape) == pytest.approx(
        target.expected_dice
    )
