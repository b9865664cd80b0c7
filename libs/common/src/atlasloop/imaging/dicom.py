"""Read one CT series from a DICOM folder or a zip of slices.

Slices are sorted by their position along the slice normal (not by file name or instance
number); rescale slope and intercept give Hounsfield units; the affine comes from
ImageOrientationPatient and ImagePositionPatient, converted from DICOM's LPS to RAS. Refused,
before pixel data is read: files of more than one series, a modality other than CT, slices of
different size or orientation, gaps (missing slices), and sizes over the voxel limit.
:func:`read_series` also gives the series' identity (:mod:`atlasloop.imaging.dicom_identity`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from atlasloop.imaging.dicom_identity import SeriesIdentity, series_identity
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_affine, check_zip
from atlasloop.imaging.volume import MAX_VOXELS, Volume, check_geometry

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _datasets(source: Path, with_pixels: bool) -> Iterator[tuple[str, pydicom.Dataset]]:
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            try:
                yield str(path), pydicom.dcmread(path, stop_before_pixels=not with_pixels)
            except InvalidDicomError:
                continue  # not a DICOM file (a DICOMDIR's README, a thumbnail): ignored
        return
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageError(source, f"not a readable zip of DICOM slices ({exc})") from None
    with archive:
        for info in sorted(check_zip(archive, source), key=lambda i: i.filename):
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ImageError(source, f"corrupt zip member {info.filename!r} ({exc})") from None
            try:
                yield info.filename, pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not with_pixels)
            except InvalidDicomError:
                continue


def _geometry(
    source: Path, headers: list[tuple[str, pydicom.Dataset]]
) -> tuple[list[str], np.ndarray, tuple[int, int]]:
    if not headers:
        raise ImageError(source, "contains no DICOM slices")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise ImageError(source, f"contains {len(series)} series; import one series at a time")
    modalities = {str(ds.get("Modality", "")) for _, ds in headers}
    if modalities != {"CT"}:
        raise ImageError(source, f"modality is {', '.join(sorted(modalities)) or 'missing'}, not CT")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers}
    if len(sizes) != 1:
        raise ImageError(source, f"slices have different sizes {sorted(sizes)}")
    try:
        orientations = {tuple(round(float(v), 4) for v in ds.ImageOrientationPatient) for _, ds in headers}
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
        pixel = [float(v) for v in headers[0][1].PixelSpacing]
    except AttributeError as exc:
        raise ImageError(source, f"slices lack geometry ({exc})") from None
    if len(orientations) != 1:
        raise ImageError(source, "slices have different orientations")
    rows, cols = sizes.pop()
    check_geometry((cols, rows, len(headers)), np.eye(4), source, MAX_VOXELS)
    orientation = np.array(orientations.pop(), dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]  # direction of increasing column, row index
    normal = np.cross(row_dir, col_dir)
    along = positions @ normal
    order = np.argsort(along)
    along = along[order]
    steps = np.diff(along)
    if len(headers) > 1:
        if np.any(steps < 1e-3):
            raise ImageError(source, "two slices share one position (duplicate or mixed acquisitions)")
        step = float(np.median(steps))
        if np.any(np.abs(steps - step) > 0.01 * step + 1e-3):
            gap = int(np.argmax(np.abs(steps - step)))
            raise ImageError(
                source,
                f"slices are not evenly spaced: {steps[gap]:.3f} mm after slice {gap} "
                f"where {step:.3f} mm is usual (missing slices?)",
            )
    thickness = float(headers[0][1].get("SliceThickness", 1.0) or 1.0) if len(headers) == 1 else 0.0
    affine = stack_affine(orientation, (pixel[0], pixel[1]), positions[order], thickness)
    names = [headers[i][0] for i in order]
    check_affine(affine, (cols, rows, len(names)), source)
    return names, affine, (rows, cols)


def stack_affine(
    orientation: np.ndarray, pixel_spacing: tuple[float, float], positions: np.ndarray, thickness: float
) -> np.ndarray:
    """The RAS affine of slices in slice order, array axes (i, j, k) = (column, row, slice): i moves
    along the row direction, j along the column direction, k from the first position to the last
    (one slice: along the normal by ``thickness``). The reader stacks series by it, and a DICOM SEG
    maps a label map back onto a series with it."""
    row_dir, col_dir = orientation[:3], orientation[3:]
    n = len(positions)
    slice_vec = (positions[-1] - positions[0]) / (n - 1) if n > 1 else np.cross(row_dir, col_dir) * thickness
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]
    lps[:3, 1] = col_dir * pixel_spacing[0]
    lps[:3, 2] = slice_vec
    lps[:3, 3] = positions[0]
    return LPS_TO_RAS @ lps


def read_dicom_series(source: str | Path) -> Volume:
    """A CT volume in HU (int16 when the values allow, else float32) from one series."""
    return read_series(source)[0]


def read_series(source: str | Path) -> tuple[Volume, SeriesIdentity]:
    """The CT volume of one series and its identity (UIDs, instances in slice order, acquisition)."""
    source = Path(source)
    if not source.exists():
        raise ImageError(source, "does not exist")
    headers = list(_datasets(source, with_pixels=False))
    names, affine, (rows, cols) = _geometry(source, headers)
    by_name = dict(headers)
    identity = series_identity([by_name[name] for name in names])
    index = {name: k for k, name in enumerate(names)}
    slices: list[np.ndarray | None] = [None] * len(names)
    for name, ds in _datasets(source, with_pixels=True):
        if name not in index:
            continue
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except (ValueError, AttributeError, RuntimeError) as exc:
            raise ImageError(source, f"{name}: unreadable pixel data ({exc})") from None
        if pixels.shape != (rows, cols):
            raise ImageError(source, f"{name}: pixel data is {pixels.shape}, header says {(rows, cols)}")
        try:
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError):
            raise ImageError(source, f"{name}: rescale slope or intercept is not a number") from None
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            raise ImageError(source, f"{name}: rescale slope {slope} or intercept {intercept} is not usable")
        slices[index[name]] = (pixels * slope + intercept).T  # (row, col) -> (i=col, j=row)
    read = [s for s in slices if s is not None]
    if len(read) != len(slices):
        raise ImageError(source, f"{len(slices) - len(read)} of {len(slices)} slices had no pixel data on reading")
    hu = np.stack(read, axis=-1)
    if np.all(hu == np.round(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        hu = hu.astype(np.int16)
    else:
        hu = hu.astype(np.float32)
    return Volume(hu, affine), identity
