"""Score a label map made elsewhere (TotalSegmentator's, a vendor's, a site's own) against the
ensemble, as one more member of the committee: to triage the labels a site already has.

The external map is taken onto the ensemble's grid (nearest neighbour, through world coordinates,
so any grid of the same scan will do) and compared organ by organ with the ensemble's pseudo-label
and with each member's own label (probability over one half): Dice against each, and the members'
Dice among themselves, which says how sure the committee is. The anatomical plausibility checks
the ensemble's own predictions get (:mod:`atlasloop.method.plausibility`: missing organ, volume,
fragments, laterality, contact) run on the external map. An organ is flagged

- by any plausibility check that fails on it;
- ``disagrees`` when its Dice against the pseudo-label is below ``DISAGREE_DICE`` while the members
  agree among themselves at least at ``AGREE_DICE`` (a committee that disagrees with itself cannot
  say the external map is the one that is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from atlasloop.imaging.compact import Cropped, EnsembleOutput
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.volume import Volume
from atlasloop.method.plausibility import VOLUME_RANGE_ML, Prediction, VolumeRanges, run_checks

DISAGREE_DICE = 0.5
AGREE_DICE = 0.7
MIN_COVERAGE = 0.5  # share of the ensemble's grid the external map must cover


@dataclass
class ExternalOrgan:
    organ: str
    volume_ml: float
    dice_vs_ensemble: float
    mean_dice_vs_members: float
    members_agreement: float
    flags: list[str] = field(default_factory=list)


@dataclass
class ExternalScore:
    coverage: float
    organs: list[ExternalOrgan]

    @property
    def flagged(self) -> list[str]:
        return [o.organ for o in self.organs if o.flags]


def on_grid(labels: Volume, shape: tuple[int, int, int], affine: np.ndarray) -> tuple[np.ndarray, float]:
    """``labels`` sampled at the centres of the voxels of (shape, affine), and the share of those
    centres that fall inside ``labels``' grid (0 outside)."""
    ijk = np.indices(shape).reshape(3, -1).astype(np.float64)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    source = np.linalg.inv(labels.affine)
    index = np.rint(source[:3, :3] @ world + source[:3, 3:4]).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.asarray(labels.shape)[:, None]), axis=0)
    sampled = np.zeros(index.shape[1], labels.array.dtype)
    sampled[inside] = labels.array[index[0, inside], index[1, inside], index[2, inside]]
    return sampled.reshape(shape), float(inside.mean())


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def score_external(output: EnsembleOutput, labels: Volume, ranges: VolumeRanges = VOLUME_RANGE_ML) -> ExternalScore:
    """The external ``labels`` (on any grid of the case's scan) against the ensemble ``output``;
    ``ranges``: the project's plausible volumes."""
    sampled, coverage = on_grid(labels, output.shape, output.affine)
    if coverage < MIN_COVERAGE:
        raise ImageError(
            "external labels",
            f"cover {coverage:.0%} of the ensemble's grid (at least {MIN_COVERAGE:.0%}): not a label map of this case",
        )
    masks = {organ: sampled == value for value, organ in ORGANS.items()}
    pseudo = {organ: output.pseudo[organ].full(output.shape).astype(bool) for organ in ORGANS.values()}
    members = {
        member: {organ: output.soft[member][organ].full(output.shape) > 127 for organ in ORGANS.values()}
        for member in output.members
    }
    crops = {organ: Cropped.of(mask) for organ, mask in masks.items()}
    prediction = Prediction(crops, output.affine, crops, ranges)  # one map: its own "members' mean"
    checks = run_checks(prediction)
    native_ml = abs(float(np.linalg.det(labels.affine[:3, :3]))) / 1000.0
    organs = []
    for value, organ in ORGANS.items():
        by_member = [_dice(masks[organ], members[m][organ]) for m in output.members]
        agreement = [_dice(members[a][organ], members[b][organ]) for a, b in combinations(output.members, 2)]
        found = ExternalOrgan(
            organ,
            volume_ml=float(np.count_nonzero(labels.array == value)) * native_ml,
            dice_vs_ensemble=_dice(masks[organ], pseudo[organ]),
            mean_dice_vs_members=float(np.mean(by_member)) if by_member else 0.0,
            members_agreement=float(np.mean(agreement)) if agreement else 1.0,
            flags=list(checks.get(organ, [])),
        )
        if found.dice_vs_ensemble < DISAGREE_DICE and found.members_agreement >= AGREE_DICE:
            found.flags.append("disagrees")
        organs.append(found)
    return ExternalScore(coverage, organs)
