"""Improved mode: AtlasLoop's own scorers, registered by name, selectable and combinable.

Maps. Besides the reference's inconsistency and overlap, ``binary_entropy`` (of the members' mean,
in bits: the proper entropy of a per-organ sigmoid) and ``mutual_information`` (BALD: entropy of
the mean minus the mean of member entropies, i.e. disagreement that is not shared noise) can build
the attention region; each is thresholded and opened like the reference's signals.

Case scores. ``voxels`` (the reference), ``mm3`` (voxel size aware), ``organ_fraction`` (attention
volume over organ volume, so the liver does not dominate), ``disagreement`` (1 - mean pairwise
member Dice) and ``plausibility`` (flags from :mod:`atlasloop.method.plausibility`) are combined
with weights into an organ score; the case priority is the sum over organs.

Expected Dice gate. An organ whose pseudo-label would score at least ``ERROR_MATTERS_DICE`` against
the ensemble's own mean probability (:func:`expected_dice`) and that no plausibility check flags
gets no attention regions and no score: the ensemble expects no error there that a reviewer would
act on, so the annotator's minutes go elsewhere. Measured on a demo's stack (docs/adr/0010): case-
organ precision 0.75 -> 0.85 at sensitivity 0.99 on the first set's 16 cases, 0.76 -> 0.79 at
1.00 on the next set's 12; ``expected_dice_floor=None`` turns it off.

Calibrated expected Dice. The soft Dice is the ensemble's own belief, and a set can be biased per
organ (the demo's first set: the aorta's expected Dice 0.79 against a true 0.92, so the gate kept ten
aortas that were right). A model set carries per-organ offsets, the median of (true Dice - expected
Dice) on the cases its gate kept aside (:func:`fit_expected_dice_offsets`, fitted by training when it
publishes, docs/adr/0012); the gate compares ``expected + offset`` with the floor.
``calibrate_expected_dice=False`` compares the raw value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from atlasloop.imaging.compact import Box, Cropped
from atlasloop.imaging.ensemble_rule import above_threshold
from atlasloop.imaging.metrics import dice_offsets
from atlasloop.method.plausibility import VOLUME_RANGE_ML, volume_ranges
from atlasloop.method.reference import OrganAttention, empty, opening, organ_box, overlap


def _binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.asarray(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def inconsistency_map(probs: np.ndarray) -> np.ndarray:
    return probs.std(axis=0) if len(probs) > 1 else np.zeros(probs.shape[1:])


def binary_entropy_map(probs: np.ndarray) -> np.ndarray:
    return _binary_entropy_bits(probs.mean(axis=0))


def mutual_information_map(probs: np.ndarray) -> np.ndarray:
    if len(probs) < 2:
        return np.zeros(probs.shape[1:])
    return np.asarray(
        np.clip(_binary_entropy_bits(probs.mean(axis=0)) - _binary_entropy_bits(probs).mean(axis=0), 0, None)
    )


SIGNAL_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "inconsistency": inconsistency_map,
    "binary_entropy": binary_entropy_map,
    "mutual_information": mutual_information_map,
}
DEFAULT_THRESHOLDS = {"inconsistency": 0.1, "binary_entropy": 0.5, "mutual_information": 0.1}

# Below this Dice an organ's label holds an error a reviewer acts on: about where two expert
# annotators of abdominal organs disagree (inter-observer Dice 0.90-0.96 for liver, kidneys and
# spleen). atlasloop.loop.judging judges attention with the same definition.
ERROR_MATTERS_DICE = 0.90


def expected_dice(probs: np.ndarray, pseudo: np.ndarray) -> float:
    """The pseudo-label's soft Dice against the members' mean probability, 2 sum(p y) / (sum p +
    sum y): its Dice in expectation if each voxel's truth were drawn from the ensemble's belief
    (the numerator exactly; the denominator to first order). 1.0 when both are empty."""
    if not probs.size:
        return 1.0
    mean = probs.astype(np.float64).mean(axis=0)
    total = float(mean.sum()) + float(np.count_nonzero(pseudo))
    return 2.0 * float(mean[pseudo].sum()) / total if total > 0 else 1.0


# An organ's offset needs this many held-out cases; larger offsets than the bound are clipped (a
# set that far off its own belief is better judged by the raw signals than by one number).
OFFSET_MIN_CASES = 2
OFFSET_BOUND = 0.3


def organ_expected_dice(
    organ: str, soft: Sequence[Cropped], pseudo: Mapping[str, Cropped], shape: tuple[int, int, int]
) -> float:
    """:func:`expected_dice` of one organ from stored maps, over the box the scoring reads (the
    training gate's entry; the scoring has read the probabilities already and calls
    :func:`box_expected_dice`)."""
    box = organ_box(organ, soft, [], pseudo, shape)
    if box is None:
        return 1.0
    return box_expected_dice(_probs_in(soft, box), pseudo.get(organ), box)


def box_expected_dice(probs: np.ndarray, pseudo: Cropped | None, box: Box | None) -> float:
    """:func:`expected_dice` of the members' ``probs`` over ``box`` against the organ's pseudo-label
    crop (absent: an empty pseudo-label); 1.0 without a box (no member predicted the organ)."""
    if box is None:
        return 1.0
    own = pseudo.read(box).astype(bool) if pseudo is not None else np.zeros(probs.shape[1:], bool)
    return expected_dice(probs, own)


def _probs_in(soft: Sequence[Cropped], box: Box) -> np.ndarray:
    """The members' stored uint8 maps over ``box`` as probabilities, one row per member."""
    return np.stack([c.read(box).astype(np.float32) / 255 for c in soft])


def fit_expected_dice_offsets(
    pairs: Mapping[str, Sequence[tuple[float, float]]], min_cases: int = OFFSET_MIN_CASES, bound: float = OFFSET_BOUND
) -> dict[str, float]:
    """organ -> median of (true Dice - expected Dice) over its ``(expected, true)`` pairs, clipped
    to +-``bound``; organs with fewer than ``min_cases`` pairs get none. The median, not the mean:
    one case where the set missed the organ entirely would move a mean of three by a third."""
    return {
        organ: float(np.clip(np.median([true - expected for expected, true in values]), -bound, bound))
        for organ, values in pairs.items()
        if len(values) >= min_cases
    }


def offsets_of_set(document: Mapping[str, object]) -> dict[str, float]:
    """The expected-Dice offsets a model set's document (``model-sets/<version>.json``) carries;
    none for sets published before calibration or imported by hand."""
    offsets = document.get("expected_dice_offsets") or {}
    if not isinstance(offsets, Mapping):
        raise ValueError("expected_dice_offsets must be an object of organ -> offset")
    return dice_offsets(offsets)


@dataclass(frozen=True)
class ImprovedConfig:
    signals: tuple[str, ...] = ("inconsistency", "mutual_information", "overlap")
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    opening_iterations: int = 1  # the reference's 2 erase errors thinner than 5 voxels
    # Default measured side by side on 24 simulated cases (make bench): ranking by attention volume
    # in mm^3 put 39% of all error voxels in the top quarter of cases, the reference's voxel count
    # 31%, organ_fraction + disagreement 19%. A plausibility flag counts as 2 mL of attention.
    weights: Mapping[str, float] = field(default_factory=lambda: {"mm3": 1.0, "plausibility": 2000.0})
    expected_dice_floor: float | None = ERROR_MATTERS_DICE  # see the module docstring; None: every organ
    volume_ranges_ml: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(VOLUME_RANGE_ML))
    # Apply the model set's expected-Dice offsets (module docstring) when the set carries them.
    calibrate_expected_dice: bool = True
    expected_dice_offsets: Mapping[str, float] = field(default_factory=dict)  # the set's, filled per case

    def with_offsets(self, offsets: Mapping[str, float]) -> ImprovedConfig:
        """This config for a set whose offsets are ``offsets`` (none applied when not calibrating)."""
        return replace(self, expected_dice_offsets=dict(offsets) if self.calibrate_expected_dice else {})

    def __post_init__(self) -> None:
        unknown = [s for s in self.signals if s not in SIGNAL_MAPS and s != "overlap"]
        unknown += [s for s in self.weights if s not in CASE_SCORERS]
        volume_ranges(self.volume_ranges_ml)  # refuses unknown organs and bounds that are not [low < high]
        dice_offsets(self.expected_dice_offsets)  # refuses unknown organs and values outside +-1
        if self.expected_dice_floor is not None and not 0.0 < self.expected_dice_floor <= 1.0:
            raise ValueError(f"expected_dice_floor must be in (0, 1], got {self.expected_dice_floor}")
        if unknown:
            raise ValueError(
                f"unknown scorers {unknown}; maps: {sorted(SIGNAL_MAPS)}, overlap; case scorers: {sorted(CASE_SCORERS)}"
            )


def improved_attention(
    organ: str,
    soft: Sequence[Cropped],
    pseudo: Mapping[str, Cropped],
    shape: tuple[int, int, int],
    config: ImprovedConfig,
) -> tuple[OrganAttention, np.ndarray]:
    """The improved attention of one organ and the members' probabilities in its box."""
    box = organ_box(organ, soft, [], pseudo, shape)
    if box is None:
        return empty(organ), np.zeros((len(soft), 0, 0, 0))
    probs = _probs_in(soft, box)
    heat = np.zeros(probs.shape[1:])
    region = np.zeros(probs.shape[1:], bool)
    parts: dict[str, np.ndarray] = {}
    for name in config.signals:
        if name == "overlap":
            mask = overlap(organ, pseudo, box)
            value = mask.astype(np.float64)
        else:
            value = SIGNAL_MAPS[name](probs).astype(np.float64)
            mask = opening(value > config.thresholds[name], config.opening_iterations)
            value[~mask] = 0
        parts[name] = value
        heat += value
        region |= mask
    peak = heat.max()
    heat = heat / peak if peak > 0 else heat
    zero = np.zeros_like(heat)
    uncertainty = parts.get("binary_entropy", zero) + parts.get("mutual_information", zero)
    return OrganAttention(
        organ, box, parts.get("inconsistency", zero), uncertainty, parts.get("overlap", zero).astype(bool), region, heat
    ), probs


@dataclass
class OrganEvidence:
    """What the case scorers look at for one organ."""

    attention: OrganAttention
    probs: np.ndarray
    organ_ml: float
    voxel_ml: float
    flags: list[str]
    expected_dice: float = 1.0
    offset: float = 0.0  # the set's calibration of expected_dice for this organ

    @property
    def calibrated_dice(self) -> float:
        return min(1.0, max(0.0, self.expected_dice + self.offset))

    def gated(self, floor: float | None) -> bool:
        """No error worth a person's minutes is expected here (the module docstring)."""
        return floor is not None and not self.flags and self.calibrated_dice >= floor


def _voxels(e: OrganEvidence) -> float:
    return float(e.attention.region_voxels)


def _mm3(e: OrganEvidence) -> float:
    return e.attention.region_voxels * e.voxel_ml * 1000.0


def _organ_fraction(e: OrganEvidence, floor_ml: float = 5.0) -> float:
    return e.attention.region_voxels * e.voxel_ml / max(e.organ_ml, floor_ml)


def _disagreement(e: OrganEvidence) -> float:
    if len(e.probs) < 2 or not e.probs.size:
        return 0.0
    masks = above_threshold(e.probs)
    dices = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            total = int(masks[i].sum()) + int(masks[j].sum())
            dices.append(1.0 if total == 0 else 2.0 * int((masks[i] & masks[j]).sum()) / total)
    return 1.0 - float(np.mean(dices))


def _plausibility(e: OrganEvidence) -> float:
    return float(len(e.flags))


CASE_SCORERS: dict[str, Callable[[OrganEvidence], float]] = {
    "voxels": _voxels,
    "mm3": _mm3,
    "organ_fraction": _organ_fraction,
    "disagreement": _disagreement,
    "plausibility": _plausibility,
}


def organ_score(evidence: OrganEvidence, weights: Mapping[str, float]) -> float:
    return sum(w * CASE_SCORERS[name](evidence) for name, w in weights.items())
