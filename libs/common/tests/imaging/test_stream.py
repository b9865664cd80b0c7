"""Streaming NIfTI loads give exactly what the file loader gives, and refuse what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.stream import load_nifti_chunks
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti


def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize(("name", "chunk"), [("ct.nii.gz", 1000), ("ct.nii.gz", 7), ("ct.nii", 4096)])
def test_same_voxels_and_geometry_as_the_file_loader(real_ct_dir, tmp_path, name, chunk):
    source = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    path = save_nifti(source, tmp_path / name)
    streamed = load_nifti_chunks(_chunks(path.read_bytes(), chunk), name)
    assert np.array_equal(streamed.array, source.array) and streamed.array.dtype == source.array.dtype
    assert np.allclose(streamed.affine, source.affine)


def test_truncated_and_garbage_streams_are_refused(tmp_path):
    path = save_nifti(Volume(np.arange(8000, dtype=np.int16).reshape(20, 20, 20), np.eye(4)), tmp_path / "v.nii.gz")
    data = path.read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        load_nifti_chunks(_chunks(data[: len(data) // 2], 100), "v.nii.gz")
    with pytest.raises(ImageError):
        load_nifti_chunks(iter([b"\x1f\x8b\x08\x00garbage-garbage"]), "g.nii.gz")
