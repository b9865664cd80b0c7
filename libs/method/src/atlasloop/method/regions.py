"""Attention regions: the connected components of an organ's attention region, described so a
viewer can jump from one to the next (most heat first)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from atlasloop.imaging.volume import voxel_volume_ml
from atlasloop.method.reference import FULL, OrganAttention

SIGNALS = ("inconsistency", "uncertainty", "overlap", "plausibility")


@dataclass(frozen=True)
class Region:
    organ: str
    min_voxel: tuple[int, int, int]
    max_voxel: tuple[int, int, int]  # inclusive
    min_mm: tuple[float, float, float]
    max_mm: tuple[float, float, float]
    voxels: int
    volume_ml: float
    peak_heat: float
    mean_heat: float
    heat_sum: float
    dominant_signal: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def find_regions(attention: OrganAttention, affine: np.ndarray, plausibility: np.ndarray | None = None) -> list[Region]:
    """Components (26-connected) of the region, with bounding boxes in voxels and world mm."""
    if attention.box is None or not attention.region.any():
        return []
    labels, count = ndimage.label(attention.region, structure=FULL)
    offset = np.array([lo for lo, _ in attention.box])
    voxel_ml = voxel_volume_ml(affine)
    signals = [attention.inconsistency, attention.uncertainty, attention.overlap.astype(np.float64)]
    if plausibility is not None:
        signals.append(plausibility.astype(np.float64))
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[box] == index
        heat = attention.heat[box][mask]
        strengths = [float(s[box][mask].sum()) for s in signals]
        lo = offset + [s.start for s in box]
        hi = offset + [s.stop - 1 for s in box]
        corners = np.array([lo, hi], dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]
        found.append(
            Region(
                attention.organ,
                _ints(lo),
                _ints(hi),
                _floats(corners.min(axis=0)),
                _floats(corners.max(axis=0)),
                int(mask.sum()),
                float(mask.sum()) * voxel_ml,
                float(heat.max()),
                float(heat.mean()),
                float(heat.sum()),
                SIGNALS[int(np.argmax(strengths))],
            )
        )
    del count
    return sorted(found, key=lambda r: -r.heat_sum)


def _ints(values: np.ndarray) -> tuple[int, int, int]:
    x, y, z = (int(v) for v in values)
    return x, y, z


def _floats(values: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z
