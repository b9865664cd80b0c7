"""Scoring one case in either mode: attention per organ, organ scores, case priority, regions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.compact import Cropped, EnsembleOutput, entropy_term, quantise, union_box
from atlasloop.imaging.ensemble_rule import above_threshold
from atlasloop.imaging.volume import voxel_volume_ml
from atlasloop.method import reference
from atlasloop.method.improved import (
    ImprovedConfig,
    OrganEvidence,
    box_expected_dice,
    improved_attention,
    organ_score,
)
from atlasloop.method.plausibility import Prediction, run_checks
from atlasloop.method.regions import Region, find_regions
from atlasloop.method.structures import TARGETS

MODES = ("reference", "improved")


@dataclass
class OrganResult:
    organ: str
    attention: reference.OrganAttention
    score: float  # region voxels (reference) or the combined improved score
    heat_sum: int  # sum of the stored uint8 attention: orders organs inside a case
    flags: list[str] = field(default_factory=list)
    expected_dice: float | None = None  # improved mode: the pseudo-label's Dice against the members' mean
    expected_dice_offset: float = 0.0  # improved mode: the model set's calibration of it (improved.py)
    gated: bool = False  # improved mode: no error that matters expected, so no regions and no score


@dataclass
class CaseResult:
    case_id: str
    mode: str
    priority: float
    organs: list[OrganResult]
    regions: list[Region]

    def organ_order(self) -> list[str]:
        """Organs with non-zero attention, most heat first (the reference's priority.csv order)."""
        present = [
            o for o in self.organs if not o.gated and (o.heat_sum != 0 or (self.mode == "improved" and o.score > 0))
        ]
        return [o.organ for o in sorted(present, key=lambda o: (-o.heat_sum, -o.score))]

    def as_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "mode": self.mode,
            "priority": self.priority,
            "organ_order": self.organ_order(),
            "organs": [
                {
                    "organ": o.organ,
                    "score": o.score,
                    "heat_sum": o.heat_sum,
                    "region_voxels": o.attention.region_voxels,
                    "flags": o.flags,
                    "expected_dice": o.expected_dice,
                    "expected_dice_offset": o.expected_dice_offset,
                    "gated": o.gated,
                }
                for o in self.organs
            ],
            "regions": [r.as_json() for r in self.regions],
        }


def member_entropy(output: EnsembleOutput, member: str, organ: str) -> Cropped:
    """The stored entropy map, or one computed from the stored soft map when absent.

    The reference stores entropy of the unmasked prediction; computed here from the masked soft map,
    it is zero outside the member's dilated largest component (documented difference).
    """
    stored = output.entropy.get(member, {}).get(organ)
    if stored is not None:
        return stored
    soft = output.soft[member][organ]
    return Cropped(soft.box, quantise(entropy_term(soft.data.astype(np.float64) / 255)))


def _check(output: EnsembleOutput) -> None:
    if not output.members:
        raise InvalidInput("the prediction has no ensemble members")
    for member in output.members:
        missing = [o for o in TARGETS if o not in output.soft.get(member, {})]
        if missing:
            raise InvalidInput(f"member {member!r} has no soft prediction for {', '.join(missing)}")
        for organ, crop in output.soft[member].items():
            if crop.data.dtype != np.uint8:
                raise InvalidInput(f"member {member!r} {organ}: soft maps must be uint8 (0..255)")


def score_case(
    case_id: str, output: EnsembleOutput, mode: str = "reference", config: ImprovedConfig | None = None
) -> CaseResult:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    _check(output)
    organs: list[OrganResult] = []
    regions: list[Region] = []
    voxel_ml = voxel_volume_ml(output.affine)
    if mode == "reference":
        for organ in TARGETS:
            soft = [output.soft[m][organ] for m in output.members]
            entropy = [member_entropy(output, m, organ) for m in output.members]
            attention = reference.organ_attention(organ, soft, entropy, output.pseudo, output.shape)
            organs.append(OrganResult(organ, attention, float(attention.region_voxels), attention.stored_sum))
            regions += find_regions(attention, output.affine)
        priority = float(reference.case_priority([o.attention for o in organs]))
    else:
        config = config or ImprovedConfig()
        flags = run_checks(Prediction(output.pseudo, output.affine, _mean_over_half(output), config.volume_ranges_ml))
        for organ in TARGETS:
            soft = [output.soft[m][organ] for m in output.members]
            attention, probs = improved_attention(organ, soft, output.pseudo, output.shape, config)
            crop = output.pseudo.get(organ)
            organ_ml = float(np.count_nonzero(crop.data)) * voxel_ml if crop is not None and crop.box else 0.0
            evidence = OrganEvidence(
                attention,
                probs,
                organ_ml,
                voxel_ml,
                flags.get(organ, []),
                box_expected_dice(probs, output.pseudo.get(organ), attention.box),
                config.expected_dice_offsets.get(organ, 0.0),
            )
            gated = evidence.gated(config.expected_dice_floor)
            score = 0.0 if gated else organ_score(evidence, config.weights)
            organs.append(
                OrganResult(
                    organ,
                    attention,
                    score,
                    attention.stored_sum,
                    evidence.flags,
                    evidence.expected_dice,
                    evidence.offset,
                    gated,
                )
            )
            if not gated:
                regions += find_regions(attention, output.affine)
        priority = float(sum(o.score for o in organs))
    regions.sort(key=lambda r: -r.heat_sum)
    return CaseResult(case_id, mode, priority, organs, regions)


def _mean_over_half(output: EnsembleOutput) -> dict[str, Cropped]:
    out = {}
    for organ in TARGETS:
        crops = [output.soft[m][organ] for m in output.members]
        box = union_box([c.box for c in crops])
        if box is None:
            out[organ] = Cropped(None, np.zeros((0, 0, 0), bool))
            continue
        mean = np.mean([c.read(box).astype(np.float32) for c in crops], axis=0) / 255
        out[organ] = Cropped(box, above_threshold(mean))
    return out
