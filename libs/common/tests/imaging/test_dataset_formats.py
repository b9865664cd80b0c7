"""Each release layout reads back with its own format's reader, voxel for voxel, and the checker
finds what nnU-Net's dataset checker, a datalist reader or a SEG reader would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from atlasloop.common.objectstore import sha256_file
from atlasloop.imaging.dataset_formats import FORMATS, verify, write_case, write_index
from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.dicom_seg import SegProvenance, from_series_grid, read_seg
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti

CLASSES = {0: "background", **ORGANS}
WHEN = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _cases(tmp_path):
    """Two cases on flipped, anisotropic grids, every class present in the first."""
    rng = np.random.default_rng(5)
    made = {}
    for i, shape in enumerate([(18, 14, 9), (12, 16, 6)]):
        affine = np.diag([-0.8, 0.9, 2.5, 1.0])
        affine[:3, 3] = [40.0 + i, -20.0, 7.5]
        ct = Volume(rng.integers(-1000, 1500, size=shape).astype(np.int16), affine)
        labels = Volume(rng.integers(0, 10 if i == 0 else 4, size=shape).astype(np.uint8), affine)
        case = f"case-{i}"
        made[case] = (save_nifti(ct, tmp_path / case / "ct.nii.gz"), save_nifti(labels, tmp_path / case / "lab.nii.gz"))
    return made


def _release(tmp_path, fmt):
    out = tmp_path / f"release-{fmt}"
    out.mkdir(parents=True)
    entries = []
    cases = _cases(tmp_path / "src")
    for case, (ct, labels) in cases.items():
        provenance = SegProvenance(case, f"v-{case}", automatic=case == "case-0", author="ms-1", created_at=WHEN)
        files = write_case(fmt, out, case, ct, labels, CLASSES, provenance)
        entries.append({"case_id": case, "files": {str(p.relative_to(out)): sha256_file(p) for p in files}})
    index = write_index(fmt, out, list(cases), CLASSES, "r1", "test")
    manifest = {
        "format": fmt,
        "classes": {str(k): v for k, v in CLASSES.items()},
        "cases": entries,
        "files": {str(p.relative_to(out)): sha256_file(p) for p in index},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out, cases


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_layout_reads_back_with_its_own_reader(tmp_path, fmt):
    out, cases = _release(tmp_path, fmt)
    assert verify(out) == []
    for case, (ct_path, label_path) in cases.items():
        stored = load_nifti(label_path, labels=True)
        if fmt == "abdomenatlas":
            combined = nib.load(out / case / "combined_labels.nii.gz")
            assert np.array_equal(np.asarray(combined.dataobj), stored.array)
            assert np.allclose(combined.affine, nib.load(out / case / "ct.nii.gz").affine)
            liver = np.asarray(nib.load(out / case / "segmentations" / "liver.nii.gz").dataobj)
            assert np.array_equal(liver == 1, stored.array == 5)
        elif fmt in ("nnunet", "msd"):
            image = f"{case}_0000.nii.gz" if fmt == "nnunet" else f"{case}.nii.gz"
            assert np.array_equal(np.asarray(nib.load(out / "labelsTr" / f"{case}.nii.gz").dataobj), stored.array)
            ct = nib.load(out / "imagesTr" / image)
            assert np.array_equal(np.asarray(ct.dataobj), load_nifti(ct_path).array)
        else:
            volume, identity = read_series(out / case / "ct")
            seg = (out / case / "seg.dcm").read_bytes()
            ct = load_nifti(ct_path)  # the series is in slice order: mapped back, the same voxels
            assert np.array_equal(from_series_grid(volume.array, identity, ct).array, ct.array)
            assert np.array_equal(read_seg(seg, identity, stored).array, stored.array)
            kind = hd.seg.segread(out / case / "seg.dcm").SegmentationType
            assert kind == "BINARY"
    if fmt == "msd":
        items = load_decathlon_datalist(out / "dataset.json", data_list_key="training", base_dir=out)
        assert sorted(item["label"] for item in items) == sorted(str(out / f"labelsTr/{c}.nii.gz") for c in cases)
    if fmt == "nnunet":
        index = json.loads((out / "dataset.json").read_text())
        assert index["labels"]["background"] == 0 and index["numTraining"] == 2
        assert index["channel_names"] == {"0": "CT"} and index["file_ending"] == ".nii.gz"


def test_a_second_write_of_a_dicom_case_is_the_same_series(tmp_path):
    first, _ = _release(tmp_path / "a", "dicom-seg")
    second, _ = _release(tmp_path / "b", "dicom-seg")
    for path in sorted(first.rglob("*.dcm")):
        assert sha256_file(path) == sha256_file(second / path.relative_to(first))


def test_the_checker_finds_what_nnunet_would_refuse(tmp_path):
    out, _ = _release(tmp_path, "nnunet")
    label = out / "labelsTr" / "case-1.nii.gz"
    image = nib.load(label)
    array = np.asarray(image.dataobj).copy()
    array[0, 0, 0] = 12  # a class dataset.json does not declare
    nib.save(nib.Nifti1Image(array, image.affine), label)
    (out / "imagesTr" / "case-0_0000.nii.gz").unlink()  # a case without its channel
    index = json.loads((out / "dataset.json").read_text())
    index["numTraining"] = 3
    index["labels"]["spleen"] = 11  # labels no longer consecutive
    (out / "dataset.json").write_text(json.dumps(index))
    problems = "\n".join(verify(out))
    assert "case-1.nii.gz: checksum differs" in problems
    assert "values [12] are not declared" in problems
    assert "imagesTr: ['case-0_0000.nii.gz'] missing" in problems
    assert "numTraining 3 but 2 cases" in problems
    assert "consecutive" in problems


def test_the_checker_finds_a_label_off_its_image_grid_and_a_broken_seg(tmp_path):
    atlas, _ = _release(tmp_path / "a", "abdomenatlas")
    path = atlas / "case-0" / "combined_labels.nii.gz"
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine @ np.diag([1, 1, 2, 1])), path)
    assert any("spacing, origin or direction differs" in p for p in verify(atlas))
    seg, _ = _release(tmp_path / "b", "dicom-seg")
    (seg / "case-1" / "seg.dcm").write_bytes(b"not dicom")
    assert any("highdicom cannot read it" in p for p in verify(seg))
