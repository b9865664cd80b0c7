"""A volume is a 3-D array with the affine that places its voxels in the world (RAS+, mm).

Loading validates before allocating, with the limits of ``atlasloop.imaging.limits``: the
header's shape, voxel type and claimed bytes (against the file's own size), the affine and voxel
sizes; the image must be 3-D (a trailing singleton fourth axis is dropped), and voxel values must
be finite.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import MAX_VOXELS, check_affine, check_claim, check_dtype, check_invertible, check_shape

__all__ = ["MAX_VOXELS", "Volume", "check_geometry", "load_nifti", "save_nifti"]


def voxel_volume_ml(affine: np.ndarray) -> float:
    """One voxel's volume in millilitres on the grid ``affine`` (mm) describes."""
    return float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


@dataclass
class Volume:
    """Voxel array (i, j, k) and its 4x4 voxel-to-world affine (RAS+, millimetres)."""

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        check_geometry(self.array.shape, self.affine, None)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm (lengths of the affine's columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' or 'LPS'."""
        return "".join(aff2axcodes(self.affine))

    @property
    def voxel_volume_ml(self) -> float:
        return voxel_volume_ml(self.affine)

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """World coordinates (mm) of voxel indices, shape (..., 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return np.asarray(ijk @ self.affine[:3, :3].T + self.affine[:3, 3])

    def with_array(self, array: np.ndarray) -> Volume:
        return Volume(array, self.affine.copy())


def check_geometry(
    shape: tuple[int, ...], affine: np.ndarray, source: str | Path | None, max_voxels: int = MAX_VOXELS
) -> None:
    """Refuse non-3-D shapes, absurd sizes and affines that cannot map voxels to the world (every
    volume; files read from outside are held to ``limits.check_affine`` too)."""
    check_shape(tuple(shape), source, max_voxels)
    check_invertible(affine, source)


def load_nifti(
    path: str | Path, max_voxels: int = MAX_VOXELS, dtype: np.dtype | None = None, labels: bool = False
) -> Volume:
    """Read a ``.nii`` or ``.nii.gz`` CT (or, ``labels``, a label map: integer voxels only),
    validated from its header before the voxels are read."""
    path = Path(path)
    try:
        image: Any = nib.load(path)  # a Nifti1/Nifti2 image: shape, affine, dataobj
    except FileNotFoundError:
        raise ImageError(path, "file does not exist") from None
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise ImageError(path, f"not a readable NIfTI file ({exc})") from None
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    affine = image.affine if image.affine is not None else np.eye(4)
    check_geometry(shape, affine, path, max_voxels)
    check_affine(affine, shape, path)
    stored = image.get_data_dtype()
    check_dtype(stored, path, labels)
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    check_claim(shape, stored, path, path.stat().st_size, compressed)
    try:
        data = np.asarray(image.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise ImageError(path, f"voxel data is truncated or corrupt ({exc})") from None
    data = data.reshape(shape)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ImageError(path, "contains NaN or infinite voxels")
    return Volume(data, affine)


def save_nifti(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI with both qform and sform set to its affine."""
    path = Path(path)
    image = nib.Nifti1Image(volume.array, volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path
