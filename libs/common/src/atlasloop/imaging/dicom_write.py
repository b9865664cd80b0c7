"""Write a CT volume as a DICOM CT series with pydicom, one file per slice along the third axis.

The inverse of :mod:`atlasloop.imaging.dicom`: RAS affine to LPS ImagePositionPatient and
ImageOrientationPatient, HU to unsigned stored values through RescaleSlope and RescaleIntercept.
Used to hand scans to DICOM-only tools and, in tests, to prove the reader exact.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from atlasloop.imaging.dicom_identity import derived_uid
from atlasloop.imaging.volume import Volume

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_series(
    volume: Volume,
    folder: Path,
    modality: str = "CT",
    series_uid: str | None = None,
    shuffle_names: bool = True,
    slope: float = 1.0,
    intercept: float | None = None,
    tags: Mapping[str, object] | None = None,
    uid_seed: str | None = None,
) -> list[Path]:
    """Write the series; ``shuffle_names`` scrambles file names so readers cannot rely on them;
    ``tags`` (DICOM keyword -> value) are set on every slice (a scanner's, a patient's);
    ``uid_seed`` derives every UID from it (the same series written twice is the same series),
    otherwise they are new."""

    def uid(*parts: object) -> UID:
        return UID(derived_uid(uid_seed, *map(str, parts))) if uid_seed is not None else generate_uid()

    folder.mkdir(parents=True, exist_ok=True)
    if intercept is None:  # stored values are unsigned: the intercept is at or below the minimum
        intercept = float(min(-1024, int(volume.array.min())))
    lps = RAS_TO_LPS @ volume.affine
    spacing = volume.spacing
    row_dir = lps[:3, 0] / spacing[0]
    col_dir = lps[:3, 1] / spacing[1]
    series_uid = series_uid or uid("series")
    study_uid = uid("study")
    frame_uid = uid("frame")
    order = list(range(volume.shape[2]))
    if shuffle_names:
        random.Random(0).shuffle(order)
    paths = []
    for name_index, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid("instance", k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{name_index:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = name_index + 1
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in (lps[:3, :3] @ [0, 0, k] + lps[:3, 3])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        stored = np.round((volume.array[:, :, k].astype(np.float64) - intercept) / slope).astype(np.uint16)
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()  # rows = j, columns = i
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
