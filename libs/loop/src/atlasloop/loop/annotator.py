"""A simulated annotator: it corrects an AI label map with the ground truth, only where it looks,
tags what it fixed, and reports the minutes a person would have spent.

Where it looks: inside the attention regions the scoring service returned (guided revision), or
everywhere (the baseline of reading every organ on every slice). Inside a region of organ O it
replaces the label with the truth wherever either says O; a region it overlooks (probability
``miss_rate``, seeded) stays as it was, as people overlook things; in a full read each organ is
overlooked with the same probability.

Effort model (minutes), stated in the report:

- ``open_case`` to load a case, orient and scroll through it once;
- ``inspect_slice`` per organ per axial slice looked at without drawing;
- ``edit_slice`` per organ per axial slice where the label changes.

Calibration: the published cost of labelling from scratch is 30-60 minutes per organ per CT (we
use ``scratch_organ`` = 45); guided revision in the published loop took about 15 minutes per
case. With the defaults, correcting three organs over 15 slices each, after inspecting 40 slices
of the regions, costs 2 + 0.04 x 120 + 0.25 x 45 = 18 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atlasloop.common.domain import ErrorTag
from atlasloop.imaging.boxes import box_slices, voxel_bounds
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS
from atlasloop.imaging.volume import Volume


@dataclass(frozen=True)
class EffortModel:
    open_case: float = 2.0
    inspect_slice: float = 0.04
    edit_slice: float = 0.25
    scratch_organ: float = 45.0

    def minutes(self, inspected: int, edited: int) -> float:
        return self.open_case + self.inspect_slice * inspected + self.edit_slice * edited


@dataclass(frozen=True)
class NativeBox:
    """An attention region on the CT's native grid: organ and inclusive voxel bounds."""

    organ: str
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    def slices(self) -> tuple[slice, slice, slice]:
        return box_slices(self.lo, self.hi)


def native_box(organ: str, min_mm, max_mm, affine: np.ndarray, shape: tuple[int, ...], pad: int = 1) -> NativeBox:
    """A world-coordinate box (mm, RAS) as voxel bounds on a grid, padded and clipped."""
    return NativeBox(organ, *voxel_bounds(min_mm, max_mm, affine, shape, pad))


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the patient's superior-inferior direction."""
    return int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))


def _slices_of(mask: np.ndarray, axis: int) -> int:
    other = tuple(a for a in range(3) if a != axis)
    return int(mask.any(axis=other).sum())


@dataclass
class Revision:
    labels: Volume
    organs: list[str]
    tags: list[tuple[str, ErrorTag]]  # (organ, what was wrong)
    minutes: float
    inspected_slices: int
    edited_slices: int
    regions_overlooked: int = 0
    changed_voxels: dict[str, int] = field(default_factory=dict)


def _tag(before: np.ndarray, after: np.ndarray) -> ErrorTag:
    added, removed = int((after & ~before).sum()), int((before & ~after).sum())
    if not before.any():
        return ErrorTag.MISSING_ORGAN
    if not after.any():
        return ErrorTag.HALLUCINATED_ORGAN
    if added + removed < 0.05 * max(int(after.sum()), 1):
        return ErrorTag.BOUNDARY
    return ErrorTag.MISSED_REGION if added >= removed else ErrorTag.LEAKAGE


class SimulatedAnnotator:
    def __init__(self, effort: EffortModel | None = None, miss_rate: float = 0.1, seed: int = 0) -> None:
        self.effort = effort or EffortModel()
        self.miss_rate = miss_rate
        self.rng = np.random.default_rng(seed)

    def revise(self, ai: Volume, truth: Volume, regions: list[NativeBox] | None) -> Revision:
        """Correct ``ai`` with ``truth`` inside ``regions`` (None: everywhere)."""
        if ai.shape != truth.shape:
            raise ValueError(f"AI labels {ai.shape} and truth {truth.shape} are on different grids")
        before, after = ai.array, ai.array.copy()
        axis = axial_axis(ai.affine)
        looked = {organ: np.zeros(ai.shape, bool) for organ in ORGANS.values()}
        overlooked = 0
        if regions is None:  # a full read: every organ, every slice; an organ may be overlooked too
            for label, organ in ORGANS.items():
                looked[organ] = (before == label) | (truth.array == label)
                if self.rng.random() < self.miss_rate:
                    overlooked += 1
                    continue
                target = looked[organ]
                after[target] = truth.array[target]
        else:
            for box in regions:
                label = ORGAN_IDS[box.organ]
                view = looked[box.organ][box.slices()]
                view |= True
                if self.rng.random() < self.miss_rate:
                    overlooked += 1
                    continue
                sl = box.slices()
                target = (before[sl] == label) | (truth.array[sl] == label)
                after[sl][target] = truth.array[sl][target]
        organs, tags, changed = [], [], {}
        inspected = edited = 0
        for label, organ in ORGANS.items():
            inspected += _slices_of(looked[organ], axis)
            was, now = before == label, after == label
            diff = was ^ now
            if diff.any():
                organs.append(organ)
                edited += _slices_of(diff, axis)
                changed[organ] = int(diff.sum())
                tags.append((organ, _tag(was, now)))
        minutes = self.effort.minutes(inspected, edited)
        return Revision(Volume(after, ai.affine), organs, tags, minutes, inspected, edited, overlooked, changed)
