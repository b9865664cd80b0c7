"""Implicit shapes on a deformed millimetre grid: ellipsoids and tubes along polylines.

Shapes are evaluated only inside their bounding box, on coordinates already displaced by the
case's smooth deformation, and their surface is perturbed by a smooth noise field, so no two
phantoms share an outline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass
class Field:
    """Grid coordinates (mm, RAS) after deformation, plus smooth noise fields in [-1, 1]."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # undeformed 1-D coordinates per axis
    noise: list[np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.x.shape
        return int(x), int(y), int(z)

    def box(self, lo: np.ndarray, hi: np.ndarray, pad_mm: float = 12.0) -> tuple[slice, slice, slice]:
        """Index ranges covering [lo, hi] mm (plus the deformation's reach) on each axis."""
        slices = []
        for axis, coords in enumerate(self.axes):
            a, b = sorted((lo[axis] - pad_mm, hi[axis] + pad_mm))
            step = coords[1] - coords[0] if len(coords) > 1 else 1.0
            if step > 0:
                start, stop = np.searchsorted(coords, a), np.searchsorted(coords, b, side="right")
            else:
                start, stop = (
                    len(coords) - np.searchsorted(coords[::-1], b, side="right"),
                    len(coords) - np.searchsorted(coords[::-1], a),
                )
            slices.append(slice(int(start), int(stop)))
        return tuple(slices)  # type: ignore[return-value]


@dataclass(frozen=True)
class Ellipsoid:
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    roughness: float = 0.10  # relative surface perturbation
    noise_index: int = 0

    def mask(self, f: Field) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        c, r = np.asarray(self.center), np.asarray(self.radii)
        region = f.box(c - r * (1 + self.roughness), c + r * (1 + self.roughness))
        d = ((f.x[region] - c[0]) / r[0]) ** 2 + ((f.y[region] - c[1]) / r[1]) ** 2 + ((f.z[region] - c[2]) / r[2]) ** 2
        limit = 1.0 + self.roughness * f.noise[self.noise_index % len(f.noise)][region]
        return region, d <= limit * limit


@dataclass(frozen=True)
class Tube:
    points: tuple[tuple[float, float, float], ...]
    radius: float
    roughness: float = 0.10
    noise_index: int = 1

    def mask(self, f: Field) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        p = np.asarray(self.points, dtype=np.float64)
        region = f.box(p.min(axis=0) - self.radius * 1.3, p.max(axis=0) + self.radius * 1.3)
        x, y, z = f.x[region], f.y[region], f.z[region]
        best = np.full(x.shape, np.inf, dtype=np.float32)
        for a, b in itertools.pairwise(p):
            ab = b - a
            t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
            np.clip(t, 0.0, 1.0, out=t)
            dist2 = (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2
            np.minimum(best, dist2, out=best)
        limit = self.radius * (1.0 + self.roughness * f.noise[self.noise_index % len(f.noise)][region])
        return region, best <= limit * limit
