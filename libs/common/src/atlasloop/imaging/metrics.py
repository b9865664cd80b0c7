"""Per-organ segmentation metrics, spacing-aware.

Definitions match MONAI's (so numbers compare): a surface is the mask minus its erosion by the
6-connected structure, with background outside the image; surface distances are exact Euclidean
distances in millimetres between surface voxel centres. NSD counts surface voxels of either mask
within ``tolerance_mm`` of the other surface; HD95 is the larger of the two directed 95th
percentiles (linear interpolation).

Empty masks, documented and never NaN:

| prediction | truth | Dice | NSD | HD95 |
|---|---|---|---|---|
| empty | empty | 1.0 | 1.0 | 0.0 |
| empty | not empty (or the reverse) | 0.0 | 0.0 | inf |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from atlasloop.imaging.labels import ORGANS


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool, copy=False), truth.astype(bool, copy=False)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def dice_offsets(offsets: Mapping[str, float]) -> dict[str, float]:
    """Per-organ differences of two Dice values (a model set's expected-Dice offsets), checked
    where they are written (the model registry) and where they are read (the scoring): organs of
    the schema, each finite and within +-1. ValueError names what is wrong."""
    unknown = sorted(set(offsets) - set(ORGANS.values()))
    if unknown:
        raise ValueError(f"expected-Dice offsets for unknown organs {unknown}")
    values = {str(organ): float(value) for organ, value in offsets.items()}
    bad = {organ: value for organ, value in values.items() if not (math.isfinite(value) and abs(value) <= 1.0)}
    if bad:
        raise ValueError(f"expected-Dice offsets outside +-1: {bad}")
    return values


def _crop(pred: np.ndarray, truth: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their union's bounding box plus ``margin`` (computation only)."""
    union = pred | truth
    slices = []
    for axis in range(union.ndim):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        slices.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, union.shape[axis])))
    region = tuple(slices)
    return pred[region], truth[region]


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a 6-neighbour outside it (or outside the image)."""
    return np.asarray(mask & ~ndimage.binary_erosion(mask, border_value=0))


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``truth``'s surface, and back.

    Both masks must be non-empty. Surfaces are sparse, so the exact nearest-surface distances
    come from a KD-tree over the surface voxels' millimetre coordinates (as MONAI does on CPU)
    rather than from a dense distance transform of the whole box.
    """
    pred, truth = _crop(pred.astype(bool, copy=False), truth.astype(bool, copy=False), margin=1)
    scale = np.asarray(spacing, dtype=np.float64)
    pred_points = np.argwhere(surface(pred)) * scale
    truth_points = np.argwhere(surface(truth)) * scale
    to_truth = cKDTree(truth_points, leafsize=32).query(pred_points, k=1)[0]
    to_pred = cKDTree(pred_points, leafsize=32).query(truth_points, k=1)[0]
    return to_truth, to_pred


def _empty_case(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float] | None:
    """(NSD, HD95) when either mask is empty, per the table above; None otherwise."""
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 1.0, 0.0
    if not has_pred or not has_truth:
        return 0.0, float("inf")
    return None


def surface_scores(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float
) -> tuple[float, float]:
    """(NSD at ``tolerance_mm``, HD95) from one computation of the surface distances."""
    empty = _empty_case(pred, truth)
    if empty is not None:
        return empty
    a, b = surface_distances(pred, truth, spacing)
    nsd_value = float((np.sum(a <= tolerance_mm) + np.sum(b <= tolerance_mm)) / (len(a) + len(b)))
    return nsd_value, float(max(np.percentile(a, 95), np.percentile(b, 95)))


def nsd(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float) -> float:
    return surface_scores(pred, truth, spacing, tolerance_mm)[0]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
    return surface_scores(pred, truth, spacing, 0.0)[1]


@dataclass(frozen=True)
class OrganMetrics:
    """One organ's agreement between a prediction and the truth."""

    organ: str
    dice: float
    nsd: float
    hd95_mm: float
    pred_ml: float
    truth_ml: float

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def organ_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: tuple[float, float, float],
    tolerance_mm: float = 2.0,
    organs: dict[int, str] | None = None,
) -> list[OrganMetrics]:
    """Metrics for every organ of the schema, computed on the two label maps."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} are on different grids")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    results = []
    for label, name in (organs or ORGANS).items():
        p, t = pred == label, truth == label
        nsd_value, hd95_value = surface_scores(p, t, spacing, tolerance_mm)
        results.append(
            OrganMetrics(name, dice(p, t), nsd_value, hd95_value, float(p.sum()) * voxel_ml, float(t.sum()) * voxel_ml)
        )
    return results
