"""Attention judged at the levels a person acts on, and revision strategies judged as curves.

**Case and organ.** An organ of a case *holds an error that matters* when the AI label's Dice
against the truth is below ``MATTERS_DICE`` (0.90), or the organ is missing or hallucinated
outright. Why 0.90: it is about where two expert annotators of abdominal organs disagree (the
inter-observer Dice reported for liver, kidneys and spleen is 0.90-0.96, for pancreas and
gallbladder lower), so below it a reviewer sees a mistake rather than a matter of taste; above
it, a correction buys less than a second reader would change. The attention *flags* the organ when
the scoring service gave it at least one attention region. Sensitivity = flagged errors / errors
that matter; precision = flagged errors / flagged organs.

**Region.** The unit a person revises is one attention region (a box on the screen). A region is
*correct* when its box holds voxels of a true error component of its organ; a true error
component (26-connected, of the AI label against the truth) *counts* when it is at least
``MIN_ERROR_ML`` (0.1 mL, about a 5 mm cube: smaller is resampling noise at the boundary, not an
error anyone draws) and is *found* when a box of its organ overlaps it. Sensitivity = found /
counted components; precision = correct / regions.

**Voxel.** ``evaluation.detection``: error voxels inside boxes over all error voxels, and over
all box voxels.

**Efficiency.** For every seed, the minutes each strategy needs to reach the Dice that random
selection reaches with its whole budget (random stops at the budget; guided strategies go on
through every case); ``minutes_ratio_attention_vs_random`` is attention's over random's (median
over seeds; below 1 is better). A strategy that never reaches it, even with every case revised, is
given all its minutes and marked ``reached: false`` (its ratio is then a lower bound).

**Oracle.** :func:`oracle_plan` knows the truth: it revises, largest error first, only the organs
whose error matters, inside boxes around their counted error components. It is not a strategy
anyone can run; it is the bound better detection can approach under the effort model, reported
beside the others so that a target ratio can be read against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.volume import Volume
from atlasloop.loop.annotator import NativeBox
from atlasloop.loop.evaluation import Curve, Plan
from atlasloop.method.improved import ERROR_MATTERS_DICE

MATTERS_DICE = ERROR_MATTERS_DICE  # one definition: the improved scoring's expected-Dice gate uses it too
MIN_ERROR_ML = 0.1
FULL = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class Counts:
    """Hits among what should be found, and among what was flagged."""

    relevant: int  # errors that matter / error components counted
    found: int  # of those, flagged / overlapped by a region
    flagged: int  # organs flagged / regions
    correct: int  # of those, holding an error

    @property
    def sensitivity(self) -> float | None:
        return self.found / self.relevant if self.relevant else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.flagged if self.flagged else None

    def as_json(self) -> dict:
        return {"sensitivity": self.sensitivity, "precision": self.precision, **asdict(self)}

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


NONE = Counts(0, 0, 0, 0)


def organ_matters(pred: np.ndarray, truth: np.ndarray) -> bool:
    """Does this organ's AI label hold an error that matters (module docstring)?"""
    if not pred.any() and not truth.any():
        return False
    return dice(pred, truth) < MATTERS_DICE


def case_organ(
    ai: Mapping[str, Volume], truth: Mapping[str, Volume], regions: Mapping[str, Sequence[NativeBox]]
) -> Counts:
    total = NONE
    for case_id, t in truth.items():
        flagged_organs = {box.organ for box in regions.get(case_id, [])}
        for label, organ in ORGANS.items():
            pred, true = ai[case_id].array == label, t.array == label
            if not pred.any() and not true.any():
                continue
            matters, flagged = organ_matters(pred, true), organ in flagged_organs
            total += Counts(int(matters), int(matters and flagged), int(flagged), int(matters and flagged))
    return total


def _counted_components(error: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, set[int]]:
    """26-connected components of ``error`` and the ones at least ``MIN_ERROR_ML`` large."""
    components, count = ndimage.label(error, structure=FULL)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    min_voxels = max(1, int(np.ceil(MIN_ERROR_ML / voxel_ml)))
    return components, {i for i in range(1, count + 1) if sizes[i] >= min_voxels}


def _voxel_ml(volume: Volume) -> float:
    return abs(float(np.linalg.det(volume.affine[:3, :3]))) / 1000.0


def region_level(
    ai: Mapping[str, Volume], truth: Mapping[str, Volume], regions: Mapping[str, Sequence[NativeBox]]
) -> Counts:
    total = NONE
    for case_id, t in truth.items():
        boxes = regions.get(case_id, [])
        for label, organ in ORGANS.items():
            components, counted = _counted_components((ai[case_id].array == label) ^ (t.array == label), _voxel_ml(t))
            found: set[int] = set()
            organ_boxes = [b for b in boxes if b.organ == organ]
            correct = 0
            for box in organ_boxes:
                inside = set(np.unique(components[box.slices()])) & counted
                found |= inside
                correct += bool(inside)
            total += Counts(len(counted), len(found), len(organ_boxes), correct)
    return total


def oracle_plan(ai: Mapping[str, Volume], truth: Mapping[str, Volume]) -> Plan:
    """Boxes around the counted error components of each organ whose error matters, cases with the
    most wrong voxels in them first (the module docstring)."""
    wrong: dict[str, int] = {}
    regions: dict[str, list[NativeBox]] = {}
    for case_id, t in truth.items():
        wrong[case_id], regions[case_id] = 0, []
        for label, organ in ORGANS.items():
            pred, true = ai[case_id].array == label, t.array == label
            if not organ_matters(pred, true):
                continue
            components, counted = _counted_components(pred ^ true, _voxel_ml(t))
            for index, box in enumerate(ndimage.find_objects(components), start=1):
                if index in counted and box is not None:
                    wrong[case_id] += int((components[box] == index).sum())
                    i, j, k = box
                    lo, hi = (i.start, j.start, k.start), (i.stop - 1, j.stop - 1, k.stop - 1)
                    regions[case_id].append(NativeBox(organ, lo, hi))
    return Plan(sorted(truth, key=lambda c: -wrong[c]), regions)


def minutes_to_reach(curve: Curve, target: float) -> tuple[float, bool]:
    """The minutes after which ``curve``'s Dice first reaches ``target``; (its last minutes, False)
    when it never does."""
    for minutes, value in zip(curve.minutes, curve.dice, strict=True):
        if value >= target - 1e-12:
            return minutes, True
    return curve.minutes[-1], False


def efficiency(curves: Sequence[Curve], budget_min: float) -> dict:
    """Per strategy and seed, the minutes to reach random's final Dice, and attention's ratio."""
    seeds = sorted({c.seed for c in curves})
    by = {(c.strategy, c.seed): c for c in curves}
    strategies = sorted({c.strategy for c in curves})
    per_seed = []
    for seed in seeds:
        target = by["random", seed].dice[-1]
        random_minutes, _ = minutes_to_reach(by["random", seed], target)
        row: dict = {"seed": seed, "target_dice": target, "minutes": {}, "reached": {}}
        for strategy in strategies:
            minutes, reached = minutes_to_reach(by[strategy, seed], target)
            row["minutes"][strategy], row["reached"][strategy] = minutes, reached
        row["ratios"] = {s: row["minutes"][s] / random_minutes if random_minutes else None for s in strategies}
        row["ratio_attention_vs_random"] = row["ratios"]["attention"]
        per_seed.append(row)
    ratios = [r["ratio_attention_vs_random"] for r in per_seed if r["ratio_attention_vs_random"] is not None]
    return {
        "budget_min": budget_min,
        "minutes_ratio_attention_vs_random": float(np.median(ratios)) if ratios else None,
        "ratio_spread": [float(min(ratios)), float(max(ratios))] if ratios else None,
        "per_seed": per_seed,
        "median_minutes": {s: float(np.median([r["minutes"][s] for r in per_seed])) for s in strategies},
        "median_ratios": {s: _median([r["ratios"][s] for r in per_seed]) for s in strategies},
    }


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None
