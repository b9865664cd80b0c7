"""Read any supported CT input (NIfTI file, DICOM folder, DICOM zip) and write files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from atlasloop.imaging.dicom import read_dicom_series
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_zip
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti


def read_ct(source: str | Path) -> Volume:
    """A CT from a ``.nii``/``.nii.gz`` file, a folder of DICOM slices or a zip of them."""
    source = Path(source)
    if source.is_dir() or source.suffix.lower() == ".zip":
        return read_dicom_series(source)
    if source.name.lower().endswith((".nii", ".nii.gz")):
        return load_nifti(source)
    raise ImageError(source, "not a NIfTI file (.nii, .nii.gz), a DICOM folder or a zip of DICOM slices")


def save_nifti_atomic(volume: Volume, path: str | Path) -> Path:
    """Write next to ``path`` under a temporary name, then rename: a failure leaves nothing."""
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ImageError(path, "output must end in .nii or .nii.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=suffix)
    os.close(handle)
    try:
        save_nifti(volume, temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def safe_extract(archive_path: str | Path, dest: str | Path, max_total_bytes: int) -> Path:
    """Extract a zip refusing members that escape ``dest`` and archives that expand too far."""
    import zipfile

    archive_path, dest = Path(archive_path), Path(dest).resolve()
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageError(archive_path, f"not a readable zip ({exc})") from None
    with archive:
        check_zip(archive, archive_path, max_total_bytes)
        for info in archive.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest) or info.filename.startswith("/"):
                raise ImageError(archive_path, f"member {info.filename!r} would land outside the archive's folder")
        try:
            archive.extractall(dest)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ImageError(archive_path, f"corrupt archive ({exc})") from None
    return dest
