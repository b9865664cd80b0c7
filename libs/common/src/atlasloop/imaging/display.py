"""From a volume to a picture's pixels: planes, display orientation, pixel geometry.

Volumes are viewed in RAS (a view: flips and transposes, no copy). Display conventions:

| plane | rows, top to bottom | columns, left to right (radiological) | letters L/R/T/B |
|---|---|---|---|
| axial | anterior -> posterior | patient right -> left | R, L, A, P |
| coronal | superior -> inferior | patient right -> left | R, L, S, I |
| sagittal | superior -> inferior | anterior -> posterior | A, P, S, I |

Radiological is the default (the patient's left on the image's right, as if facing the patient);
``neurological=True`` mirrors axial and coronal pictures left to right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from atlasloop.common.errors import InvalidInput

PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


@dataclass
class RasVolume:
    """A volume viewed in RAS order, with the matching affine."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(np.linalg.norm(self.affine[:3, :3], axis=0), dtype=np.float64)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def to_ras(array: np.ndarray, affine: np.ndarray) -> RasVolume:
    transform = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
    return RasVolume(apply_orientation(array, transform), affine @ inv_ornt_aff(transform, array.shape))


@dataclass(frozen=True)
class SliceGeometry:
    """Which voxels a picture shows, and the pixel size in mm.

    Pictures are axis-aligned cuts, so the voxel of display pixel (r, c) is separable: along
    ``row_axis`` it is ``rows[r]``, along ``col_axis`` it is ``cols[c]``, along the plane's axis
    it is ``index``.
    """

    plane: str
    index: int
    rows_mm: float
    cols_mm: float
    row_axis: int
    col_axis: int
    rows: np.ndarray
    cols: np.ndarray
    letters: tuple[str, str, str, str]  # left, right, top, bottom

    @property
    def voxels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(i, j, k) of every display pixel, each (rows, cols)."""
        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        grid: list[np.ndarray] = [np.full(rr.shape, self.index)] * 3
        grid[self.row_axis], grid[self.col_axis] = rr, cc
        return grid[0], grid[1], grid[2]


def slice_geometry(
    shape: tuple[int, int, int], spacing: np.ndarray, plane: str, index: int, neurological: bool = False
) -> SliceGeometry:
    if plane not in PLANE_AXIS:
        raise InvalidInput(f"plane must be one of {', '.join(PLANE_AXIS)}")
    axis = PLANE_AXIS[plane]
    if not 0 <= index < shape[axis]:
        raise InvalidInput(f"{plane} slice {index} is out of range 0..{shape[axis] - 1}")
    row_axis, col_axis = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[plane]
    rows = np.arange(shape[row_axis])[::-1]  # top = anterior / superior
    cols = np.arange(shape[col_axis])[::-1]  # left = patient right / anterior
    left, right, top, bottom = LETTERS[plane]
    if neurological and plane != "sagittal":
        cols = cols[::-1]
        left, right = right, left
    return SliceGeometry(
        plane,
        index,
        float(spacing[row_axis]),
        float(spacing[col_axis]),
        row_axis,
        col_axis,
        rows,
        cols,
        (left, right, top, bottom),
    )


def take(volume: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """The displayed slice of ``volume`` (same RAS grid as the geometry): views, no gather."""
    # Basic indexing is a view whatever the memory order (np.take would copy the whole volume to
    # C order first, and nibabel hands back Fortran-ordered arrays).
    cut: list[slice | int] = [slice(None)] * 3
    cut[PLANE_AXIS[geometry.plane]] = geometry.index
    picture = volume[tuple(cut)].T[::-1, :]
    return picture[:, ::-1] if geometry.cols[0] > geometry.cols[-1] else picture


def world_index(affine: np.ndarray, world_mm: np.ndarray) -> np.ndarray:
    return np.linalg.solve(affine[:3, :3], np.asarray(world_mm, dtype=np.float64) - affine[:3, 3])
