"""Hostile image files are refused from their headers, before decompressing or allocating: voxel
bytes a file cannot hold, disallowed voxel types, absurd voxel sizes, zip bombs and traversal,
unusable DICOM rescales. Peak memory while refusing a bomb is measured in a fresh process."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread

from atlasloop.imaging.dicom import read_dicom_series
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.io import safe_extract
from atlasloop.imaging.limits import MAX_ZIP_MEMBERS
from atlasloop.imaging.preprocess import PreprocessConfig, preprocess_image
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti


def _header_only(path, shape, dtype, zooms=(1.0, 1.0, 1.0), payload=b"\x00" * 64) -> None:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_zooms(zooms)
    data = header.binaryblock + b"\x00" * 4 + payload
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def test_a_small_compressed_file_claiming_more_than_it_can_hold_is_refused_unread(tmp_path):
    path = tmp_path / "bomb.nii.gz"
    _header_only(path, (1024, 1024, 400), np.uint8)  # 400 MB claimed by a file of under 1 KB
    with pytest.raises(ImageError, match=r"more than a .*compressed file can hold"):
        load_nifti(path)
    raw = tmp_path / "bomb.nii"
    _header_only(raw, (512, 512, 100), np.int16)
    with pytest.raises(ImageError, match="can hold"):
        load_nifti(raw)


def test_claims_over_the_byte_limit_and_odd_voxel_types_are_refused(tmp_path):
    path = tmp_path / "big.nii.gz"
    _header_only(path, (2048, 2048, 140), np.float64)  # 4.7 GB claimed
    with pytest.raises(ImageError, match="over the limit"):
        load_nifti(path)
    complex_ct = tmp_path / "complex.nii.gz"
    save_nifti(Volume(np.zeros((4, 4, 4), np.complex64), np.eye(4)), complex_ct)
    with pytest.raises(ImageError, match="voxel type complex64 is not allowed"):
        load_nifti(complex_ct)
    float_labels = tmp_path / "labels.nii.gz"
    save_nifti(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)), float_labels)
    with pytest.raises(ImageError, match="float32 is not allowed for a label map"):
        load_nifti(float_labels, labels=True)
    assert load_nifti(float_labels).array.dtype == np.float32  # as a CT it is fine


@pytest.mark.parametrize(
    ("zooms", "message"),
    [((1000.0, 1.0, 1.0), "outside"), ((0.001, 1.0, 1.0), "outside"), ((40.0, 40.0, 40.0), "spans")],
)
def test_absurd_voxel_sizes_are_refused_before_the_model_grid_explodes(tmp_path, zooms, message):
    path = tmp_path / "ct.nii.gz"
    volume = Volume(np.zeros((100, 100, 100), np.int16), np.diag([*zooms, 1.0]))
    nib.save(nib.Nifti1Image(volume.array, volume.affine), path)
    with pytest.raises(ImageError, match=message):
        load_nifti(path)


def test_the_model_grid_is_bounded_before_resampling():
    ct = Volume(np.zeros((4, 4, 4), np.int16), np.diag([800.0, 800.0, 800.0, 1.0]))  # built, not read
    with pytest.raises(ImageError, match="model grid"):
        preprocess_image(ct, PreprocessConfig(spacing_mm=0.5))


def test_zips_with_too_many_members_traversal_or_impossible_sizes_are_refused(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(MAX_ZIP_MEMBERS + 1):
            archive.writestr(f"s/{i}.dcm", b"")
    with pytest.raises(ImageError, match="files, over the limit"):
        read_dicom_series(many)
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as archive:
        archive.writestr("case/../../etc/cron.d/x", b"* * * * * root true")
    with pytest.raises(ImageError, match="outside the archive"):
        safe_extract(escape, tmp_path / "out", 10**9)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_dicom_with_an_unusable_rescale_is_refused(tmp_path):
    volume = Volume(np.zeros((8, 8, 3), np.int16), np.eye(4))
    paths = write_series(volume, tmp_path / "s")
    ds = dcmread(paths[1])
    ds.RescaleSlope = "NaN"
    ds.save_as(paths[1])
    with pytest.raises(ImageError, match="rescale"):
        read_dicom_series(tmp_path / "s")


def test_peak_memory_while_refusing_a_bomb_stays_small(tmp_path):
    """A fresh interpreter loads the imaging stack, then refuses a 1 GB claim in a 2 KB file:
    its peak resident memory grows by less than 64 MB."""
    path = tmp_path / "bomb.nii.gz"
    _header_only(path, (1024, 1024, 500), np.int16)  # 1 GB: within every limit but the file size
    script = f"""
import json, resource
from atlasloop.imaging.volume import load_nifti
from atlasloop.imaging.errors import ImageError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_nifti({str(path)!r})
    outcome = "loaded"
except ImageError as exc:
    outcome = str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_mib": (after - before) / 1024, "outcome": outcome}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert "can hold" in measured["outcome"]
    assert measured["grew_mib"] < 64, measured
