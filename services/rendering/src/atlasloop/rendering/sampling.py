"""A cropped map (attention) sampled at a slice's pixels: trilinear, zero wherever any coordinate
falls outside the map, exactly what ``ndimage.map_coordinates(order=1, mode="constant", cval=0)``
computes.

When the slice's rows, columns and normal each run along one axis of the map's grid (any
permutation and flips: the CT viewed in RAS and a model grid resampled from it), trilinear
sampling is separable: one interpolated plane of the map, then a row-weights and a column-weights
matrix on either side of it. For a 512 x 512 axial slice over a 128 x 128 x 100 map that is 2 ms
instead of map_coordinates' 16 ms per picture. Oblique grids take the general path.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _weights(coords: np.ndarray, n: int) -> np.ndarray:
    """(len(coords), n) linear-interpolation weights; a coordinate outside [0, n - 1] gets none."""
    weights = np.zeros((coords.size, n), np.float32)
    inside = np.flatnonzero((coords >= 0) & (coords <= n - 1))
    at = coords[inside]
    low = np.floor(at).astype(np.int64)
    frac = (at - low).astype(np.float32)
    weights[inside, low] = 1 - frac
    weights[inside, np.minimum(low + 1, n - 1)] += frac  # frac is 0 where low is the last index
    return weights


def _single_axis(column: np.ndarray) -> int | None:
    """The one map axis a CT axis moves along, or None when it moves along several (oblique)."""
    scale = float(np.abs(column).max())
    moving = np.flatnonzero(np.abs(column) > 1e-9 * max(scale, 1.0))
    return int(moving[0]) if moving.size == 1 else None


def sample_slice(
    data: np.ndarray,
    to_map: np.ndarray,
    normal_axis: int,
    index: int,
    row_axis: int,
    rows: np.ndarray,
    col_axis: int,
    cols: np.ndarray,
) -> np.ndarray:
    """``data`` at CT voxels (index on ``normal_axis``, each of ``rows`` x ``cols``), through the
    4x4 ``to_map`` (CT voxel -> map voxel); float32, shape (len(rows), len(cols))."""
    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    const = to_map[:3, normal_axis] * index + to_map[:3, 3]
    p, q, s = (_single_axis(to_map[:3, a]) for a in (row_axis, col_axis, normal_axis))
    if p is None or q is None or s is None or len({p, q, s}) != 3:
        coords = (
            const[:, None, None]
            + to_map[:3, row_axis, None, None] * rows[:, None]
            + to_map[:3, col_axis, None, None] * cols
        )
        values = ndimage.map_coordinates(data, coords.reshape(3, -1), order=1, cval=0.0, output=np.float32)
        return values.reshape(rows.size, cols.size)
    w = float(const[s])
    out = np.zeros((rows.size, cols.size), np.float32)
    if not 0 <= w <= data.shape[s] - 1:
        return out
    low = int(np.floor(w))
    frac = np.float32(w - low)
    plane = np.take(data, low, axis=s).astype(np.float32)
    if frac:
        plane = (1 - frac) * plane + frac * np.take(data, min(low + 1, data.shape[s] - 1), axis=s)
    if p > q:  # the plane's axes are the two left, in the map's order
        plane = plane.T
    row_weights = _weights(const[p] + to_map[p, row_axis] * rows, data.shape[p])
    col_weights = _weights(const[q] + to_map[q, col_axis] * cols, data.shape[q])
    return np.asarray(row_weights @ plane @ col_weights.T, np.float32)
