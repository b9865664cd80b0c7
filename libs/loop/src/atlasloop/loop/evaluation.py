"""Measuring the loop against known ground truth: dataset label quality, attention against true
errors, and revision strategies compared at the same human minutes.

Strategies (each revises cases one by one, in its own order, until the minutes run out):

- ``attention``: cases in the scoring service's priority order, corrected inside its attention
  regions (the method, reference mode);
- ``improved``: the same with AtlasLoop's improved scoring (attention from inconsistency, mutual
  information and overlap; priority in mm^3 plus plausibility flags), compared, not substituted;
- ``uncertainty``: cases ranked by ensemble uncertainty alone (binary entropy of the mean, no
  inconsistency or overlap), corrected inside the uncertainty regions;
- ``random``: cases in random order, every organ read on every slice (no guidance).

All three start from the same AI labels and use the same simulated annotator and effort model;
seeds change the random order and which regions the annotator overlooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from atlasloop.imaging.compact import EnsembleOutput
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.metrics import dice, nsd
from atlasloop.imaging.volume import Volume
from atlasloop.loop.annotator import NativeBox, SimulatedAnnotator, native_box
from atlasloop.method.case_scoring import score_case
from atlasloop.method.improved import ImprovedConfig


def organ_quality(
    labels: Mapping[str, Volume], truth: Mapping[str, Volume], tolerance_mm: float = 2.0
) -> dict[str, dict[str, float]]:
    """Per organ, mean Dice and NSD over the cases whose truth has that organ."""
    out = {}
    for label, organ in ORGANS.items():
        dices, nsds = [], []
        for case_id, t in truth.items():
            true = t.array == label
            if not true.any():
                continue
            pred = labels[case_id].array == label
            dices.append(dice(pred, true))
            nsds.append(nsd(pred, true, tuple(float(s) for s in t.spacing), tolerance_mm))
        if dices:
            out[organ] = {"dice": float(np.mean(dices)), "nsd": float(np.mean(nsds)), "cases": len(dices)}
    return out


def mean_dice(labels: Mapping[str, Volume], truth: Mapping[str, Volume]) -> float:
    """Dataset Dice: mean over cases and the organs present in each case's truth."""
    values = [
        dice(labels[c].array == label, t.array == label)
        for c, t in truth.items()
        for label in ORGANS
        if (t.array == label).any()
    ]
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class Detection:
    sensitivity: float  # error voxels inside attention boxes / all error voxels
    precision: float  # error voxels inside boxes / voxels inside boxes
    error_voxels: int
    box_voxels: int


def detection(
    ai: Mapping[str, Volume], truth: Mapping[str, Volume], regions: Mapping[str, Sequence[NativeBox]]
) -> Detection:
    """How well attention regions cover the AI labels' true errors (voxel level, native grid)."""
    errors_in = errors = boxed = 0
    for case_id, t in truth.items():
        wrong = ai[case_id].array != t.array
        inside = np.zeros(t.shape, bool)
        for box in regions.get(case_id, []):
            inside[box.slices()] = True
        errors += int(wrong.sum())
        errors_in += int((wrong & inside).sum())
        boxed += int(inside.sum())
    return Detection(errors_in / errors if errors else 1.0, errors_in / boxed if boxed else 0.0, errors, boxed)


@dataclass
class Curve:
    strategy: str
    seed: int
    minutes: list[float]  # cumulative, starting at 0
    dice: list[float]  # dataset Dice after each case


def revise_in_order(
    order: Sequence[str],
    ai: Mapping[str, Volume],
    truth: Mapping[str, Volume],
    regions: Callable[[str], list[NativeBox] | None],
    annotator: SimulatedAnnotator,
    strategy: str,
    seed: int,
    budget_min: float,
) -> Curve:
    labels = dict(ai)
    curve = Curve(strategy, seed, [0.0], [mean_dice(labels, truth)])
    for case_id in order:
        if curve.minutes[-1] >= budget_min:
            break
        revision = annotator.revise(ai[case_id], truth[case_id], regions(case_id))
        labels[case_id] = revision.labels
        curve.minutes.append(curve.minutes[-1] + revision.minutes)
        curve.dice.append(mean_dice(labels, truth))
    return curve


def dice_at(curve: Curve, minutes: float) -> float:
    """Dataset Dice once ``minutes`` are spent: the last case finished within the budget."""
    done = [d for m, d in zip(curve.minutes, curve.dice, strict=True) if m <= minutes + 1e-9]
    return done[-1]


@dataclass(frozen=True)
class Plan:
    """A guided strategy: the order it revises cases in and the regions it looks at in each."""

    order: Sequence[str]
    regions: Mapping[str, list[NativeBox]]

    def regions_of(self, case_id: str) -> list[NativeBox]:
        return list(self.regions.get(case_id, []))


def compare(
    ai: Mapping[str, Volume],
    truth: Mapping[str, Volume],
    plans: Mapping[str, Plan],
    seeds: Sequence[int],
    budget_min: float,
) -> list[Curve]:
    """Every guided plan and ``random`` (random order, full read), once per seed. Random stops at
    ``budget_min``; guided plans go on through their whole order, so the minutes they need to reach
    random's final Dice are measured, not cut off (``judging.efficiency``)."""
    curves = []
    for seed in seeds:
        random_order = list(np.random.default_rng(seed).permutation(sorted(truth)))
        runs: dict[str, tuple[Sequence[str], Callable[[str], list[NativeBox] | None]]] = {
            name: (plan.order, plan.regions_of) for name, plan in plans.items()
        }
        runs["random"] = (random_order, no_regions)
        for strategy, (order, regions) in runs.items():
            budget = budget_min if strategy == "random" else float("inf")
            curves.append(
                revise_in_order(order, ai, truth, regions, SimulatedAnnotator(seed=seed), strategy, seed, budget)
            )
    return curves


def no_regions(case_id: str) -> None:
    """A full read: no region guides the annotator."""
    return None


def local_plan(ai: dict[str, Volume], outputs: dict[str, EnsembleOutput], config: ImprovedConfig) -> Plan:
    """A strategy scored here, from the stored ensemble outputs, with another scoring config."""
    priority, regions = {}, {}
    for case_id, output in outputs.items():
        result = score_case(case_id, output, "improved", config)
        priority[case_id] = result.priority
        regions[case_id] = [
            native_box(r.organ, r.min_mm, r.max_mm, ai[case_id].affine, ai[case_id].shape) for r in result.regions
        ]
    return Plan(sorted(outputs, key=lambda c: -priority[c]), regions)
