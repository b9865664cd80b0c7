"""The gate's decision: better overall is not enough when one organ drops past the margin."""

from __future__ import annotations

from atlasloop.imaging.labels import ORGANS
from atlasloop.training.gate import OrganScore, decide, overall
from atlasloop.training.ledger import Approval
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
