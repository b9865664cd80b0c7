"""NIfTI I/O keeps geometry; bad files are refused with the file named, before big allocations."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti


def _affine():
    a = np.diag([-0.8, -0.8, 2.5, 1.0])
    a[:3, 3] = [100.0, 120.0, -300.0]
    return a


def test_round_trip_keeps_voxels_and_geometry(tmp_path):
    array = np.random.default_rng(0).integers(-1000, 1500, size=(20, 18, 7)).astype(np.int16)
    path = save_nifti(Volume(array, _affine()), tmp_path / "ct.nii.gz")
    back = load_nifti(path)
    assert np.array_equal(back.array, array) and back.array.dtype == np.int16
    assert np.allclose(back.affine, _affine())
    assert back.orientation == "LPS"
    assert np.allclose(back.spacing, (0.8, 0.8, 2.5))
    assert np.allclose(back.world([1, 2, 3]), _affine()[:3, :3] @ [1, 2, 3] + _affine()[:3, 3])


def test_trailing_singleton_fourth_axis_is_dropped(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16), np.eye(4)), tmp_path / "v.nii")
    assert load_nifti(tmp_path / "v.nii").shape == (4, 5, 6)


@pytest.mark.parametrize(
    ("array", "affine", "message"),
    [
        (np.zeros((4, 5), np.int16), np.eye(4), "3-D"),
        (np.zeros((4, 5, 6, 2), np.int16), np.eye(4), "3-D"),
        (np.zeros((4, 5, 6), np.float32) * np.nan, np.eye(4), "NaN"),
        (np.zeros((4, 5, 6), np.int16), np.diag([1.0, 0.0, 1.0, 1.0]), "invertible"),
    ],
)
def test_unusable_images_are_refused(tmp_path, array, affine, message):
    path = tmp_path / "bad.nii.gz"
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(array.dtype)
    header.set_sform(affine, code=1)  # written as given: nibabel refuses a singular qform
    header.set_qform(np.eye(4), code=0)
    nib.save(nib.Nifti1Image(array, None, header), path)
    with pytest.raises(ImageError, match=message) as err:
        load_nifti(path)
    assert "bad.nii.gz" in str(err.value)


def test_truncated_gzip_is_refused(tmp_path):
    path = save_nifti(
        Volume(np.arange(40 * 40 * 40, dtype=np.int16).reshape(40, 40, 40), np.eye(4)), tmp_path / "ct.nii.gz"
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"ct\.nii\.gz"):
        load_nifti(path)


def test_garbage_is_refused(tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(b"this is not nifti" * 50))
    with pytest.raises(ImageError, match="not a readable NIfTI"):
        load_nifti(path)
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ImageError):
        load_nifti(path)


def test_absurd_header_refused_before_reading(tmp_path):
    header = nib.Nifti2Header()  # NIfTI-2: 64-bit dimensions
    header.set_data_shape((100_000, 100_000, 100_000))
    header.set_data_dtype(np.int16)
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\x00" * 4)  # a few hundred bytes claiming 2 PB
    with pytest.raises(ImageError, match="axis over 4096"):
        load_nifti(path)
