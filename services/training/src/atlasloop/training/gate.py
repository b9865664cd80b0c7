"""The gate: evaluate a model set on held-out and replay cases, and decide whether a candidate
may replace the current set.

Evaluation is the ensemble exactly as inference runs it (``atlasloop.models.ensemble``: sliding-
window sigmoid per member, the one pseudo-label rule), on the model grid, scored per organ with Dice
and normalised surface Dice (NSD) against the human labels, averaged over cases.

The decision (``decide``): the candidate passes only if
1. on the held-out set, no organ's Dice drops by more than ``margin`` below the current set's;
2. on the replay set (labels the models were trained on before), the mean Dice does not drop by
   more than ``margin`` (forgetting);
3. its overall held-out score (mean over organs of (Dice + NSD) / 2) beats the current set's by at
   least ``min_improvement``.
The first failing rule is the recorded reason; both sets' scores are always recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.metrics import organ_metrics
from atlasloop.models.ensemble import InferenceConfig, ensemble_labels
from atlasloop.models.records import LoadedModel, shared_preprocess
from atlasloop.training.learning import Example
from atlasloop.training.runs import OrganScore

Scores = dict[str, OrganScore]
GATE_OVERLAP = 0.25  # every set at the same overlap: a fair comparison (docs/adr/0003)


def evaluate(
    members: Sequence[LoadedModel], examples: Sequence[Example], cfg: InferenceConfig, tolerance_mm: float = 2.0
) -> Scores:
    """Per-organ Dice and NSD of the ensemble, averaged over ``examples``."""
    if not examples:
        raise ValueError("no cases to evaluate on")
    spacing = (shared_preprocess([m.manifest for m in members]).spacing_mm,) * 3  # the model grid's
    sums = {organ: np.zeros(2) for organ in ORGANS.values()}
    for example in examples:
        pred = ensemble_labels(members, example.image.astype(np.float32), cfg)
        for metric in organ_metrics(pred, example.labels, spacing, tolerance_mm):
            sums[metric.organ] += (metric.dice, metric.nsd)
    return {organ: OrganScore(*(total / len(examples))) for organ, total in sums.items()}


def evaluate_here(members: Sequence[LoadedModel], examples: Sequence[Example], tolerance_mm: float) -> Scores:
    """``evaluate`` as the gate runs it in a Ray task: the worker's GPU when it has one, the
    overlap the gate compares every set at."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate(
        members, examples, InferenceConfig(overlap=GATE_OVERLAP, sw_batch_size=2, device=device), tolerance_mm
    )


def overall(scores: Scores) -> float:
    return float(np.mean([(s.dice + s.nsd) / 2 for s in scores.values()]))


def mean_dice(scores: Scores) -> float:
    return float(np.mean([s.dice for s in scores.values()]))


@dataclass(frozen=True)
class Decision:
    passed: bool
    reason: str


def decide(
    current: Scores,
    candidate: Scores,
    margin: float,
    min_improvement: float = 0.0,
    replay_current: Scores | None = None,
    replay_candidate: Scores | None = None,
) -> Decision:
    drops = [
        (organ, current[organ].dice, candidate[organ].dice)
        for organ in current
        if candidate[organ].dice < current[organ].dice - margin
    ]
    if drops:
        organ, before, after = max(drops, key=lambda d: d[1] - d[2])
        return Decision(
            False,
            f"{organ} Dice drops from {before:.3f} to {after:.3f} on the held-out set "
            f"(margin {margin:.3f}); {len(drops)} organ(s) past the margin",
        )
    if replay_current is not None and replay_candidate is not None:
        before, after = mean_dice(replay_current), mean_dice(replay_candidate)
        if after < before - margin:
            return Decision(
                False,
                f"mean Dice on the replay set drops from {before:.3f} to {after:.3f} "
                f"(margin {margin:.3f}): the candidate forgets",
            )
    before, after = overall(current), overall(candidate)
    if after <= before + min_improvement:
        return Decision(
            False,
            f"not better overall on the held-out set: {after:.4f} vs {before:.4f} (needs > {min_improvement:+.4f})",
        )
    return Decision(True, f"better overall on the held-out set: {after:.4f} vs {before:.4f}")
