"""The gate's decision: better overall is not enough when one organ drops past the margin."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.labels import ORGANS
from atlasloop.training.gate import OrganScore, decide, overall
from atlasloop.training.ledger import Approval, case_rank, with_roles
from atlasloop.training.settings import TriggerPolicy
from atlasloop.training.triggers import due


def _scores(dice: float, **organs: float) -> dict[str, OrganScore]:
    return {o: OrganScore(organs.get(o, dice), organs.get(o, dice)) for o in ORGANS.values()}


def test_gate_refuses_a_better_mean_that_drops_one_organ_past_the_margin():
    current = _scores(0.70)
    candidate = _scores(0.85, pancreas=0.60)  # mean up by about 0.12, pancreas down 0.10
    assert overall(candidate) > overall(current)
    decision = decide(current, candidate, margin=0.05)
    assert not decision.passed
    assert "pancreas Dice drops from 0.700 to 0.600" in decision.reason


def test_gate_passes_a_better_set_within_the_margin_and_refuses_no_gain():
    current = _scores(0.70)
    assert decide(current, _scores(0.80, spleen=0.67), margin=0.05).passed
    assert not decide(current, _scores(0.70), margin=0.05).passed
    assert "not better overall" in decide(current, _scores(0.70), margin=0.05).reason


def test_gate_refuses_a_candidate_that_forgets_the_replay_labels():
    current = _scores(0.70)
    decision = decide(current, _scores(0.80), margin=0.05, replay_current=_scores(0.90), replay_candidate=_scores(0.80))
    assert not decision.passed and "forgets" in decision.reason


def test_triggers_fire_on_the_count_or_on_an_organ_threshold():
    pending = {f"r{i}": Approval(f"c{i}", "v", ("liver",) if i else ("pancreas", "liver")) for i in range(3)}
    assert due(TriggerPolicy(approved_threshold=3), pending) == "approved>=3"
    assert due(TriggerPolicy(approved_threshold=4), pending) == ""
    policy = TriggerPolicy(approved_threshold=0, organ_thresholds={"pancreas": 1, "spleen": 1})
    assert due(policy, pending) == "organ:pancreas>=1"
    assert due(TriggerPolicy(approved_threshold=0), pending) == ""


def test_the_gate_judges_improvement_on_the_new_sites_when_it_has_their_cases():
    frozen, site = _scores(0.80), _scores(0.60)
    # a candidate a little worse on the old sites (within the margin), better on the new ones
    decision = decide(frozen, _scores(0.78), 0.05, site_current=site, site_candidate=_scores(0.66))
    assert decision.passed and "new sites" in decision.reason
    refused = decide(frozen, _scores(0.90), 0.05, site_current=site, site_candidate=_scores(0.60))
    assert not refused.passed and "not better overall on the new sites" in refused.reason
    assert not decide(frozen, _scores(0.70), 0.05, site_current=site, site_candidate=_scores(0.9)).passed


def test_each_site_keeps_its_first_and_every_fourth_new_case_in_rank_order_for_evaluation():
    sites = {f"b{i}": "B" for i in range(6)} | {f"d{i}": "D" for i in range(3)}
    approved = {f"r-{c}": Approval(c, f"v-{c}", ("liver",)) for c in ["b0", "d0", "b1", "b2", "d1", "b3", "b4"]}
    approved["r-b1-again"] = Approval("b1", "v-b1-2", ("liver",))  # the same case approved again
    approved["r-f"] = Approval("f0", "v-f", ("liver",))  # a frozen held-out case
    asked: list[str] = []

    def site_of(case_id: str) -> str:
        asked.append(case_id)
        return sites.get(case_id, "A")

    roles = with_roles(approved, site_of, 0.25, frozen={"f0"})
    evaluate = sorted(a.case_id for a in roles.values() if a.role == "evaluate")
    b_ranked = sorted(["b0", "b1", "b2", "b3", "b4"], key=case_rank)
    d_ranked = sorted(["d0", "d1"], key=case_rank)
    assert evaluate == sorted([b_ranked[0], b_ranked[4], d_ranked[0]])  # B: 1st and 5th case; D: 1st
    assert roles["r-b1-again"].role == roles["r-b1"].role and roles["r-f"].role == "train"
    assert len(asked) == len(set(asked))  # one look-up per case
    # The order approvals were recorded in (event delivery) does not change the choice.
    reordered = dict(reversed(list(approved.items())))
    assert with_roles(reordered, site_of, 0.25, frozen={"f0"}) == roles
    # Later approvals keep counting per site from the roles already given.
    later = roles | {"r-b5": Approval("b5", "v-b5", ("liver",)), "r-d2": Approval("d2", "v-d2", ("liver",))}
    again = with_roles(later, site_of, 0.25, frozen=set())
    assert {c: again[f"r-{c}"].role for c in ("b5", "d2")} == {"b5": "train", "d2": "train"}
    assert {k: v for k, v in again.items() if k in roles} == roles  # nothing given before changes


def test_a_guided_revision_is_scored_only_where_each_organ_was_verified():
    """Outside the liver's region the revised label is still the ensemble's: a set that copied it
    there must not score better than one that did not."""
    from atlasloop.imaging.labels import NUM_CLASSES, ORGAN_IDS
    from atlasloop.training.gate import _verified_metrics
    from atlasloop.training.learning import Example

    liver, spleen = ORGAN_IDS["liver"], ORGAN_IDS["spleen"]
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = liver  # corrected inside the liver's region
    labels[12:18, 12:18, 12:18] = spleen  # the AI's spleen, never looked at
    verified = np.zeros((NUM_CLASSES, 20, 20, 20), bool)
    verified[liver, 0:11, 0:11, 0:11] = True
    example = Example("c", "v", np.zeros((20, 20, 20), np.float32), labels, verified)
    pred = np.zeros_like(labels)
    pred[2:10, 2:10, 2:10] = liver
    (only,) = _verified_metrics(pred, example, (3.0, 3.0, 3.0), 2.0)  # the spleen is not scored at all
    assert only.organ == "liver" and only.dice == 1.0
    pred[2:6] = 0
    assert _verified_metrics(pred, example, (3.0, 3.0, 3.0), 2.0)[0].dice < 0.7
    whole = Example("c", "v", example.image, labels)
    assert {m.organ for m in _verified_metrics(pred, whole, (3.0, 3.0, 3.0), 2.0)} == set(ORGANS.values())


def test_calibration_fits_each_member_and_organ_only_where_a_person_verified_it():
    """The gate's calibration on two small cases: a temperature per verified organ of each
    member, measured out of sample (two cases, two folds); an organ verified nowhere is left out."""
    import torch

    from atlasloop.models.architectures import build, config
    from atlasloop.models.ensemble import InferenceConfig
    from atlasloop.models.records import LoadedModel, Manifest
    from atlasloop.training.gate import calibration
    from atlasloop.training.learning import Example

    cfg = config("unet", "tiny")
    torch.manual_seed(0)
    manifest = Manifest("unet", "v1", cfg.as_json(), {}, 3.0, (-200.0, 300.0), "", 0)
    member = LoadedModel("unet", "v1", cfg, build(cfg).eval(), manifest)
    rng = np.random.default_rng(3)
    examples = []
    for i in range(2):
        labels = np.zeros((24, 20, 16), np.uint8)
        labels[4:14, 4:12, 3:10] = 5  # liver
        labels[15:20, 12:18, 6:12] = 1  # spleen
        verified = np.zeros((len(ORGANS) + 1, *labels.shape), bool)
        verified[5] = True  # only the liver was looked at
        image = rng.random(labels.shape).astype(np.float32)
        examples.append(Example(f"c{i}", "v", image, labels, verified))

    fitted = calibration([member], examples, InferenceConfig(overlap=0.25))

    assert set(fitted) == {"unet"} and set(fitted["unet"]) == {"liver"}
    liver = fitted["unet"]["liver"]
    assert liver["held_out"] and liver["voxels"] > 0 and 0.05 <= liver["temperature"] <= 20
    assert 0 <= liver["ece_after"] <= 1 and 0 <= liver["ece_before"] <= 1


def test_expected_dice_pairs_are_the_scorings_number_and_the_true_dice_where_a_person_verified_the_organ():
    """On two small cases: a pair per case for each organ present, its true Dice the ensemble's
    label against the human one; an organ a person verified only in part gives none; and the
    expected Dice is what the scoring computes from the maps inference would store."""
    import torch

    from atlasloop.imaging.metrics import dice
    from atlasloop.method.improved import organ_expected_dice
    from atlasloop.models.architectures import build, config
    from atlasloop.models.ensemble import InferenceConfig, combine, run_member
    from atlasloop.models.records import LoadedModel, Manifest
    from atlasloop.training.gate import expected_dice_pairs
    from atlasloop.training.learning import Example

    cfg = config("unet", "tiny")
    torch.manual_seed(0)
    manifest = Manifest("unet", "v1", cfg.as_json(), {}, 3.0, (-200.0, 300.0), "", 0)
    members = [LoadedModel("unet", "v1", cfg, build(cfg).eval(), manifest)]
    rng = np.random.default_rng(5)
    labels = np.zeros((24, 20, 16), np.uint8)
    labels[4:14, 4:12, 3:10] = 5  # liver
    labels[15:20, 12:18, 6:12] = 1  # spleen
    image = rng.random(labels.shape).astype(np.float32)
    inference = InferenceConfig(overlap=0.25)
    output, predicted = combine(labels.shape, np.eye(4), [run_member(members[0], image, inference)])
    part = np.zeros((len(ORGANS) + 1, *labels.shape), bool)
    part[5, :9] = True  # half the liver looked at
    examples = [Example("whole", "v", image, labels), Example("part", "v", image, labels, part)]

    pairs = expected_dice_pairs(members, examples, inference)

    present = {organ for label, organ in ORGANS.items() if (predicted == label).any() or (labels == label).any()}
    assert set(pairs) == present and {"liver", "spleen"} <= present
    assert all(len(values) == 1 for values in pairs.values())  # the partly verified case adds nothing
    for label, organ in ORGANS.items():
        if organ in pairs:
            expected, true = pairs[organ][0]
            soft = [output.soft[m][organ] for m in output.members]
            assert expected == pytest.approx(organ_expected_dice(organ, soft, output.pseudo, output.shape))
            assert true == pytest.approx(dice(predicted == label, labels == label))
    assert pairs["spleen"][0][1] < 1.0  # an untrained member: the pair measures a real error
