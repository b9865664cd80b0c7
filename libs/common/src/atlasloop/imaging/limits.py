"""What an image file may claim, checked from its header before anything is decompressed or
allocated. One place for every reader (NIfTI from disk or a stream, DICOM folders and zips,
AbdomenAtlas case zips) and for the model grid.

- Shape: 3-D, each axis 1..``MAX_AXIS``, at most ``MAX_VOXELS`` voxels and ``MAX_BYTES`` of voxel
  data in the file's own type (a 512x512x2000 whole-body CT is 0.5 G voxels, 1 GB as int16).
- Type: numbers only (``CT_DTYPES``); label maps integers only (``LABEL_DTYPES``).
- Geometry: a finite, invertible affine; voxel sizes within ``MIN_SPACING_MM``..``MAX_SPACING_MM``
  and an extent of at most ``MAX_EXTENT_MM`` per axis (an extreme spacing would make the model
  grid explode when resampled).
- Compression: deflate cannot expand data more than 1032:1, so a compressed file whose header
  claims more voxel bytes than 1032 times its size lies about them, and is refused unread.
- Zips: at most ``MAX_ZIP_MEMBERS`` members, each at most ``MAX_MEMBER_BYTES``, all together at
  most ``MAX_ZIP_BYTES``; no member outside the archive's folder.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from atlasloop.imaging.errors import ImageError

MAX_AXIS = 4096
MAX_VOXELS = 600_000_000
MAX_BYTES = 2 * 1024**3
MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0
MAX_EXTENT_MM = 3000.0
DEFLATE_MAX_RATIO = 1032
MAX_ZIP_MEMBERS = 5000
MAX_MEMBER_BYTES = 512 * 1024**2
MAX_ZIP_BYTES = 4 * 1024**3
CT_DTYPES = frozenset(["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"])
LABEL_DTYPES = frozenset(["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])

Source = str | Path | None


def check_shape(shape: tuple[int, ...], source: Source, max_voxels: int = MAX_VOXELS) -> int:
    """A 3-D shape within the limits; its number of voxels."""
    if len(shape) != 3:
        raise ImageError(source, f"expected a 3-D image, got {len(shape)}-D with shape {tuple(shape)}")
    if min(shape) < 1:
        raise ImageError(source, f"empty image shape {tuple(shape)}")
    if max(shape) > MAX_AXIS:
        raise ImageError(source, f"shape {tuple(shape)} has an axis over {MAX_AXIS} voxels")
    voxels = int(np.prod(np.asarray(shape, dtype=np.int64)))
    if voxels > max_voxels:
        raise ImageError(source, f"{tuple(shape)} is {voxels:,} voxels, over the limit of {max_voxels:,}")
    return voxels


def check_invertible(affine: np.ndarray, source: Source) -> np.ndarray:
    """A finite 4x4 affine that maps voxels to the world both ways (as float64)."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ImageError(source, "affine is not a finite 4x4 matrix")
    det = np.linalg.det(affine[:3, :3])
    if not np.isfinite(det) or abs(det) < 1e-9:
        raise ImageError(source, "affine is not invertible (zero or degenerate voxel size)")
    return affine


def check_affine(affine: np.ndarray, shape: tuple[int, ...], source: Source) -> None:
    """A finite, invertible affine with plausible voxel sizes and extent."""
    affine = check_invertible(affine, source)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        sizes = ", ".join(f"{s:g}" for s in spacing)
        raise ImageError(source, f"voxel size ({sizes}) mm is outside {MIN_SPACING_MM:g}..{MAX_SPACING_MM:g} mm")
    extent = spacing * np.asarray(shape[:3], dtype=np.float64)
    if extent.max() > MAX_EXTENT_MM:
        raise ImageError(source, f"the image spans {extent.max():,.0f} mm, over {MAX_EXTENT_MM:,.0f} mm")


def check_dtype(dtype: np.dtype, source: Source, labels: bool = False) -> None:
    allowed = LABEL_DTYPES if labels else CT_DTYPES
    name = np.dtype(dtype).newbyteorder("=").name
    if name not in allowed:
        kind = "a label map" if labels else "an image"
        raise ImageError(source, f"voxel type {name} is not allowed for {kind} ({', '.join(sorted(allowed))})")


def check_claim(
    shape: tuple[int, ...], dtype: np.dtype, source: Source, stored_bytes: int | None, compressed: bool
) -> int:
    """Bytes of voxel data the header claims, refused when over ``MAX_BYTES`` or more than a file
    of ``stored_bytes`` can hold (raw: its size; deflate: 1032 times it)."""
    claimed = int(np.prod(np.asarray(shape, dtype=np.int64))) * np.dtype(dtype).itemsize
    if claimed > MAX_BYTES:
        raise ImageError(source, f"the header claims {claimed:,} bytes of voxels, over the limit of {MAX_BYTES:,}")
    if stored_bytes is not None:
        most = stored_bytes * (DEFLATE_MAX_RATIO if compressed else 1)
        if claimed > most:
            raise ImageError(
                source,
                f"the header claims {claimed:,} bytes of voxels, more than a {stored_bytes:,}-byte "
                f"{'compressed ' if compressed else ''}file can hold; refused unread",
            )
    return claimed


def check_zip(archive: zipfile.ZipFile, source: Source, max_total: int = MAX_ZIP_BYTES) -> list[zipfile.ZipInfo]:
    """The members of a zip, after bounding their number, sizes and names (sizes as declared:
    ``zipfile`` never inflates a member past its declared size, it fails the CRC instead)."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageError(source, f"zip holds {len(members):,} files, over the limit of {MAX_ZIP_MEMBERS:,}")
    total = 0
    for info in members:
        if info.file_size > MAX_MEMBER_BYTES:
            raise ImageError(source, f"zip member {info.filename!r} expands to {info.file_size:,} bytes")
        if info.compress_size and info.file_size > info.compress_size * DEFLATE_MAX_RATIO:
            raise ImageError(source, f"zip member {info.filename!r} declares an impossible size")
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/"):
            raise ImageError(source, f"zip member {info.filename!r} would land outside the archive's folder")
        total += info.file_size
    if total > max_total:
        raise ImageError(source, f"zip expands to {total:,} bytes, over the limit of {max_total:,}")
    return members
