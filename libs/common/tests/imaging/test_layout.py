"""The AbdomenAtlas case layout and per-organ mask folders, both ways."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.layout import AtlasCase, read_case, write_case
from atlasloop.imaging.volume import Volume, save_nifti


def _case():
    rng = np.random.default_rng(2)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    labels = rng.integers(0, 10, size=(12, 10, 6)).astype(np.uint8)
    return AtlasCase(
        "case_a", Volume(rng.integers(-500, 500, (12, 10, 6)).astype(np.int16), affine), Volume(labels, affine)
    )


def test_write_then_read_case(tmp_path):
    case = _case()
    folder = write_case(case, tmp_path)
    assert sorted(p.name for p in (folder / "segmentations").iterdir())[:2] == ["aorta.nii.gz", "gall_bladder.nii.gz"]
    back = read_case(folder)
    assert np.array_equal(back.ct.array, case.ct.array)
    assert np.array_equal(back.labels.array, case.labels.array)


def test_masks_only_folder_combines_with_aliases(tmp_path):
    case = _case()
    folder = write_case(case, tmp_path)
    (folder / "combined_labels.nii.gz").unlink()
    (folder / "segmentations" / "gall_bladder.nii.gz").rename(folder / "segmentations" / "gallbladder.nii.gz")
    back = read_case(folder)
    assert np.array_equal(back.labels.array, case.labels.array)


def test_mask_on_another_grid_refused(tmp_path):
    folder = write_case(_case(), tmp_path)
    (folder / "combined_labels.nii.gz").unlink()
    save_nifti(Volume(np.zeros((5, 5, 5), np.uint8), np.eye(4)), folder / "segmentations" / "liver.nii.gz")
    with pytest.raises(ImageError, match=r"liver\.nii\.gz"):
        read_case(folder)


def test_label_map_with_foreign_ids_refused(tmp_path):
    case = _case()
    case.labels.array[0, 0, 0] = 52
    folder = tmp_path / "case_b"
    save_nifti(case.ct, folder / "ct.nii.gz")
    save_nifti(case.labels, folder / "combined_labels.nii.gz")
    with pytest.raises(ImageError, match=r"label ids \[52\] are outside the schema abdomenatlas-1.0"):
        read_case(folder)
    assert ORGAN_IDS["stomach"] == 9
