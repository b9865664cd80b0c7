"""The error taxonomy: what a revision changed, organ by organ, and which error types that suggests.

One place for the tags and the suggestions, read by tracking (which stores them with each revision)
and by the web page (which shows the suggestions before submitting, for the annotator to confirm or
change).

Per organ: voxels and mL added and removed, components, Dice between the AI and the revised
label. Suggestions, from the shape of the change (the annotator confirms or edits them):

- missing_organ / hallucinated_organ: the AI had none / the revision has none;
- laterality_swap: the two sides of one of the schema's (left, right) pairs exchanged (each AI
  side matches the other side; in AbdomenAtlas 1.0 the kidneys, and spleen with liver);
- organ_confusion: most removed voxels now belong to another organ;
- fragment: removed voxels were a piece disconnected from the AI organ's main body;
- missed_region: an added component reaching deeper than ``depth_voxels`` from the AI surface;
- leakage: a removed component reaching deeper than ``depth_voxels`` from the revised surface;
- boundary: thinner changes along the surface;
- extent_protocol: changes only in the first or last slices of the organ's craniocaudal extent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from atlasloop.imaging.components import largest_component
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS, SCHEMA
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.volume import Volume

FULL = ndimage.generate_binary_structure(3, 3)
# The errors of an AI label, and those a second reader finds in a person's (double reads).
AI_TAGS = frozenset(
    {
        "missed_region",
        "leakage",
        "organ_confusion",
        "laterality_swap",
        "fragment",
        "missing_organ",
        "hallucinated_organ",
        "boundary",
        "extent_protocol",
    }
)
ANNOTATOR_TAGS = frozenset({"annotator_miss", "annotator_inconsistency", "annotator_slip"})


@dataclass
class OrganDiff:
    organ: str
    voxels_added: int
    voxels_removed: int
    ml_added: float
    ml_removed: float
    dice: float
    suggested: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _components(mask: np.ndarray, min_voxels: int) -> list[np.ndarray]:
    labels, count = ndimage.label(mask, structure=FULL)
    sizes = np.bincount(labels.ravel())
    return [labels == i for i in range(1, count + 1) if sizes[i] >= min_voxels]


def _depth(component: np.ndarray, away_from: np.ndarray) -> float:
    """How far (voxels) the component reaches from the surface of ``away_from``."""
    if not away_from.any():
        return float("inf")
    distance = ndimage.distance_transform_edt(~away_from)
    return float(distance[component].max())


def organ_diff(
    ai: np.ndarray,
    revised: np.ndarray,
    label: int,
    voxel_ml: float,
    axial_axis: int = 2,
    depth_voxels: float = 2.5,
    min_voxels: int = 8,
) -> OrganDiff:
    a, r = ai == label, revised == label
    added, removed = r & ~a, a & ~r
    out = OrganDiff(
        ORGANS[label],
        int(added.sum()),
        int(removed.sum()),
        float(added.sum()) * voxel_ml,
        float(removed.sum()) * voxel_ml,
        dice(a, r),
    )
    if not added.any() and not removed.any():
        return out
    if not a.any():
        out.suggested.append("missing_organ")
        return out
    if not r.any():
        out.suggested.append("hallucinated_organ")
        return out
    tags: set[str] = set()
    other = (revised > 0) & ~r
    if removed.sum() >= min_voxels and (removed & other).sum() > 0.5 * removed.sum():
        tags.add("organ_confusion")
    main = largest_component(a)
    for comp in _components(removed, min_voxels):
        if not (ndimage.binary_dilation(comp, structure=FULL) & main & ~comp).any() and not (comp & main).any():
            tags.add("fragment")
        elif _depth(comp, r) > depth_voxels:
            tags.add("leakage")
        else:
            tags.add("boundary")
    for comp in _components(added, min_voxels):
        tags.add("missed_region" if _depth(comp, a) > depth_voxels else "boundary")
    changed = (added | removed).any(axis=tuple(i for i in range(3) if i != axial_axis))
    extent = np.flatnonzero((a | r).any(axis=tuple(i for i in range(3) if i != axial_axis)))
    if len(extent) >= 10 and tags <= {"boundary", "missed_region", "leakage"}:
        edge = max(1, len(extent) // 10)
        ends = set(extent[:edge]) | set(extent[-edge:])
        if set(np.flatnonzero(changed)) <= ends:
            tags = {"extent_protocol"}
    out.suggested = sorted(tags) if tags else ["boundary"]
    return out


def diff_labels(ai: np.ndarray, revised: np.ndarray, voxel_ml: float, axial_axis: int = 2) -> list[OrganDiff]:
    """Every organ's diff, with the cross-organ laterality check applied."""
    diffs = [organ_diff(ai, revised, label, voxel_ml, axial_axis) for label in ORGANS]
    for left_name, right_name in SCHEMA.laterality:
        left, right = ORGAN_IDS[left_name], ORGAN_IDS[right_name]
        a_left, a_right, r_left, r_right = ai == left, ai == right, revised == left, revised == right
        if a_left.any() and a_right.any() and dice(a_left, r_right) > 0.5 and dice(a_right, r_left) > 0.5:
            for d in diffs:
                if d.organ in (left_name, right_name):
                    d.suggested = ["laterality_swap"]
    return diffs


def axial_axis(affine: np.ndarray) -> int:
    """The stored array axis that runs craniocaudally (the one contributing most to RAS z)."""
    return int(np.argmax(np.abs(np.asarray(affine)[2, :3])))


def diff_volumes(ai: Volume, revised: Volume) -> list[OrganDiff]:
    """``diff_labels`` of two label volumes on one grid, whatever order the axes are stored in."""
    return diff_labels(ai.array, revised.array, ai.voxel_volume_ml, axial_axis(ai.affine))
