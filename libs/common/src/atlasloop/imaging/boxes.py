"""World-coordinate boxes (mm, RAS: attention regions as services exchange them) on a voxel grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def voxel_bounds(
    min_mm: Sequence[float], max_mm: Sequence[float], affine: np.ndarray, shape: tuple[int, ...], pad: int = 1
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Inclusive voxel bounds of a world box on the grid ``affine``/``shape``, padded by ``pad``
    voxels (a region's box is drawn around voxel centres) and clipped to the grid."""
    corners = np.array(
        [[x, y, z, 1.0] for x in (min_mm[0], max_mm[0]) for y in (min_mm[1], max_mm[1]) for z in (min_mm[2], max_mm[2])]
    )
    voxels = (np.linalg.inv(affine) @ corners.T)[:3].T
    lo = np.clip(np.floor(voxels.min(axis=0)).astype(int) - pad, 0, np.array(shape) - 1)
    hi = np.clip(np.ceil(voxels.max(axis=0)).astype(int) + pad, 0, np.array(shape) - 1)
    a, b = (int(v) for v in lo), (int(v) for v in hi)
    return tuple(a), tuple(b)  # type: ignore[return-value]


def box_slices(lo: Sequence[int], hi: Sequence[int]) -> tuple[slice, slice, slice]:
    """Inclusive bounds as index slices."""
    return tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]
