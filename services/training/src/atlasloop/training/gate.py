"""The gate: evaluate a model set on held-out and replay cases, and decide whether a candidate
may replace the current set.

Evaluation is the ensemble exactly as inference runs it (``atlasloop.models.ensemble``: sliding-
window sigmoid per member, the one pseudo-label rule), on the model grid, scored per organ with Dice
and normalised surface Dice (NSD) against the human labels, averaged over cases. A guided revision
is compared organ by organ only where a person verified that organ (``atlasloop.training.verified``):
elsewhere its label is the ensemble's own.

The decision (``decide``): the candidate passes only if
1. on the frozen held-out set, no organ's Dice drops by more than ``margin`` below the current
   set's (it must not get worse where labels were good before);
2. on the replay set (labels the models were trained on before), the mean Dice does not drop by
   more than ``margin`` (forgetting);
3. its overall score (mean over organs of (Dice + NSD) / 2) beats the current set's by at least
   ``min_improvement`` on the *site* held-out set, the approved cases kept aside from the sites the
   loop is labelling (``Ledger.assign_roles``), where fine-tuning on their corrections is meant to
   help; before any such case exists, on the frozen held-out set.
The first failing rule is the recorded reason; every set's scores are always recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.metrics import OrganMetrics, dice, organ_metrics
from atlasloop.method.improved import fit_expected_dice_offsets, organ_expected_dice
from atlasloop.models.calibration import calibrate, near_voxels, sigmoid
from atlasloop.models.ensemble import InferenceConfig, combine, ensemble_labels, member_logits, run_member
from atlasloop.models.records import LoadedModel, shared_preprocess
from atlasloop.training.learning import Example
from atlasloop.training.runs import OrganScore

Scores = dict[str, OrganScore]
GATE_OVERLAP = 0.25  # every set at the same overlap: a fair comparison (docs/adr/0003)


def evaluate(
    members: Sequence[LoadedModel], examples: Sequence[Example], cfg: InferenceConfig, tolerance_mm: float = 2.0
) -> Scores:
    """Per-organ Dice and NSD of the ensemble, averaged over the ``examples`` that verify the organ
    (all of them, unless a guided revision's per-class mask says otherwise)."""
    if not examples:
        raise ValueError("no cases to evaluate on")
    spacing = (shared_preprocess([m.manifest for m in members]).spacing_mm,) * 3  # the model grid's
    sums = {organ: np.zeros(2) for organ in ORGANS.values()}
    counts = dict.fromkeys(ORGANS.values(), 0)
    for example in examples:
        pred = ensemble_labels(members, example.image.astype(np.float32), cfg)
        for metric in _verified_metrics(pred, example, spacing, tolerance_mm):
            sums[metric.organ] += (metric.dice, metric.nsd)
            counts[metric.organ] += 1
    return {organ: OrganScore(*(total / counts[organ])) for organ, total in sums.items() if counts[organ]}


def _verified_metrics(
    pred: np.ndarray, example: Example, spacing: tuple[float, float, float], tolerance_mm: float
) -> list[OrganMetrics]:
    """Each organ compared where a person verified it: everywhere for a whole label; inside the
    organ's own regions for a guided revision (elsewhere its label is a set's own)."""
    if example.verified is None:
        return organ_metrics(pred, example.labels, spacing, tolerance_mm)
    metrics = []
    for label, organ in ORGANS.items():
        where = example.verified if example.verified.ndim == 3 else example.verified[label]
        if where.any():
            p, t = np.where(where, pred, 0), np.where(where, example.labels, 0)
            metrics += organ_metrics(p, t, spacing, tolerance_mm, organs={label: organ})
    return metrics


def evaluate_here(members: Sequence[LoadedModel], examples: Sequence[Example], tolerance_mm: float) -> Scores:
    """``evaluate`` as the gate runs it in a Ray task: the worker's GPU when it has one, the
    overlap the gate compares every set at."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate(
        members, examples, InferenceConfig(overlap=GATE_OVERLAP, sw_batch_size=2, device=device), tolerance_mm
    )


def calibration(
    members: Sequence[LoadedModel], examples: Sequence[Example], cfg: InferenceConfig
) -> dict[str, dict[str, dict]]:
    """Each member's temperature per organ (:mod:`atlasloop.models.calibration`), fitted on the
    ``examples`` (approved revisions the members were not trained on) where a person verified the
    organ; architecture -> organ -> the fit, with the calibration error before and after."""
    samples: dict[str, dict[str, tuple[list[np.ndarray], list[np.ndarray]]]] = {
        m.architecture: {organ: ([], []) for organ in ORGANS.values()} for m in members
    }
    for example in examples:
        image = example.image.astype(np.float32)
        for member in members:
            logits = member_logits(member, image, cfg).numpy()
            for label, organ in ORGANS.items():
                where = None
                if example.verified is not None:
                    where = example.verified if example.verified.ndim == 3 else example.verified[label]
                    if not where.any():
                        continue
                truth = example.labels == label
                index = near_voxels(sigmoid(logits[label]), truth, where)
                if index.size:
                    samples[member.architecture][organ][0].append(logits[label].ravel()[index])
                    samples[member.architecture][organ][1].append(truth.ravel()[index])
    return {
        architecture: {organ: asdict(calibrate(z, y)) for organ, (z, y) in organs.items() if z}
        for architecture, organs in samples.items()
    }


def calibration_here(members: Sequence[LoadedModel], examples: Sequence[Example]) -> dict[str, dict[str, dict]]:
    """``calibration`` as a Ray task runs it: the gate's overlap, the worker's GPU when it has one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return calibration(members, examples, InferenceConfig(overlap=GATE_OVERLAP, sw_batch_size=2, device=device))


def expected_dice_pairs(
    members: Sequence[LoadedModel], examples: Sequence[Example], cfg: InferenceConfig
) -> dict[str, list[tuple[float, float]]]:
    """organ -> (expected Dice, Dice against the human label) of the set's pseudo-label on each of
    ``examples`` where a person verified all of the organ and of its prediction (a guided revision
    that verified part of it says nothing about its whole Dice). The expected Dice is the improved
    scoring's (``atlasloop.method.improved``), from the maps inference stores (uint8 soft maps kept
    around each member's largest component); both on the model grid."""
    pairs: dict[str, list[tuple[float, float]]] = {organ: [] for organ in ORGANS.values()}
    for example in examples:
        image = example.image.astype(np.float32)
        output, labels = combine(image.shape, np.eye(4), [run_member(m, image, cfg) for m in members])
        for label, organ in ORGANS.items():
            pred, truth = labels == label, example.labels == label
            if not pred.any() and not truth.any():
                continue
            if example.verified is not None:
                where = example.verified if example.verified.ndim == 3 else example.verified[label]
                if not where[pred | truth].all():
                    continue
            soft = [output.soft[member][organ] for member in output.members]
            expected = organ_expected_dice(organ, soft, output.pseudo, output.shape)
            pairs[organ].append((expected, float(dice(pred, truth))))
    return {organ: values for organ, values in pairs.items() if values}


def expected_dice_offsets_here(members: Sequence[LoadedModel], examples: Sequence[Example]) -> dict[str, float]:
    """The set's expected-Dice offsets (``fit_expected_dice_offsets``) as a Ray task fits them: the
    gate's overlap, the worker's GPU when it has one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = InferenceConfig(overlap=GATE_OVERLAP, sw_batch_size=2, device=device)
    return fit_expected_dice_offsets(expected_dice_pairs(members, examples, cfg))


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
    site_current: Scores | None = None,
    site_candidate: Scores | None = None,
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
    where = "the held-out set"
    before, after = overall(current), overall(candidate)
    if site_current is not None and site_candidate is not None:
        where = "the new sites' held-out cases"
        before, after = overall(site_current), overall(site_candidate)
    if after <= before + min_improvement:
        return Decision(
            False, f"not better overall on {where}: {after:.4f} vs {before:.4f} (needs > {min_improvement:+.4f})"
        )
    return Decision(True, f"better overall on {where}: {after:.4f} vs {before:.4f}")
