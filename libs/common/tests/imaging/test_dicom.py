"""DICOM series written by pydicom come back voxel-identical with the same world coordinates."""

from __future__ import annotations

import zipfile

import nibabel as nib
import numpy as np
import pytest

from atlasloop.imaging.dicom import read_dicom_series
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.io import read_ct, save_nifti_atomic
from atlasloop.imaging.volume import Volume, load_nifti


def _canonical(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(volume.array, volume.affine))
    return np.asarray(image.dataobj), image.affine


def _same_voxels_same_world(a: Volume, b: Volume) -> None:
    array_a, affine_a = _canonical(a)
    array_b, affine_b = _canonical(b)
    assert np.array_equal(array_a, array_b)
    assert np.allclose(affine_a, affine_b, atol=1e-4)


@pytest.fixture
def real_ct(real_ct_dir):
    return load_nifti(real_ct_dir / "example_ct_sm.nii.gz")


def test_folder_series_round_trip_through_nifti(real_ct, tmp_path):
    write_series(real_ct, tmp_path / "series")
    read = read_dicom_series(tmp_path / "series")
    _same_voxels_same_world(read, real_ct)
    out = save_nifti_atomic(read_ct(tmp_path / "series"), tmp_path / "ct.nii.gz")
    back = load_nifti(out)
    _same_voxels_same_world(back, real_ct)
    # every voxel centre at the same world position, checked directly on a few voxels
    ijk = np.array([[0, 0, 0], [121, 100, 29], [60, 50, 15]])
    world = real_ct.world(ijk)
    back_ijk = np.round(np.linalg.solve(back.affine[:3, :3], (world - back.affine[:3, 3]).T).T).astype(int)
    assert [back.array[tuple(v)] for v in back_ijk] == [real_ct.array[tuple(v)] for v in ijk]


def test_oblique_lps_zip_series(tmp_path):
    rng = np.random.default_rng(1)
    angle = np.deg2rad(12)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.7, -0.7, 2.0])
    affine[:3, 3] = [150, 140, -80]
    volume = Volume(rng.integers(-1024, 2000, size=(32, 28, 9)).astype(np.int16), affine)
    write_series(volume, tmp_path / "s", intercept=-1024)
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
        for path in sorted((tmp_path / "s").iterdir()):
            archive.write(path, f"study/{path.name}")
    read = read_dicom_series(tmp_path / "s.zip")
    _same_voxels_same_world(read, volume)


def test_rescale_slope_and_intercept_give_hu(tmp_path):
    volume = Volume((np.arange(8 * 8 * 3).reshape(8, 8, 3) * 2 - 1000).astype(np.int16), np.eye(4))
    write_series(volume, tmp_path / "s", slope=2.0, intercept=-1024.0)
    assert np.array_equal(read_dicom_series(tmp_path / "s").array, volume.array)


def test_two_series_refused(tmp_path):
    volume = Volume(np.zeros((8, 8, 3), np.int16), np.eye(4))
    write_series(volume, tmp_path / "s" / "a")
    write_series(volume, tmp_path / "s" / "b")
    with pytest.raises(ImageError, match="2 series"):
        read_dicom_series(tmp_path / "s")


def test_missing_slice_refused(tmp_path):
    paths = write_series(Volume(np.zeros((8, 8, 6), np.int16), np.eye(4)), tmp_path / "s", shuffle_names=False)
    paths[3].unlink()
    with pytest.raises(ImageError, match="missing slices"):
        read_dicom_series(tmp_path / "s")


def test_non_ct_modality_refused(tmp_path):
    write_series(Volume(np.zeros((8, 8, 3), np.int16), np.eye(4)), tmp_path / "s", modality="MR")
    with pytest.raises(ImageError, match="modality is MR"):
        read_dicom_series(tmp_path / "s")


def test_empty_and_corrupt_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no DICOM slices"):
        read_dicom_series(tmp_path / "empty")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ImageError, match=r"bad\.zip"):
        read_dicom_series(tmp_path / "bad.zip")
