"""Dataset layouts a release is written in, each as its own tools expect to read it.

- ``abdomenatlas``: the AbdomenAtlas case layout, ``<case>/ct.nii.gz``,
  ``<case>/combined_labels.nii.gz`` and one binary mask per structure in
  ``<case>/segmentations/<name>.nii.gz`` (what the published dataset ships).
- ``nnunet``: nnU-Net v2 raw data, ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz`` and a
  ``dataset.json`` with ``channel_names``, ``labels`` (background 0, consecutive), ``numTraining``
  and ``file_ending``. Name the release folder ``DatasetNNN_Name`` and it is a raw dataset.
- ``msd``: the Medical Segmentation Decathlon layout with its ``dataset.json`` datalist
  (``training``: image and label paths), what MONAI's ``load_decathlon_datalist`` reads.
- ``dicom-seg``: one DICOM SEG per case, ``<case>/seg.dcm``. A case imported from DICOM gets the
  SEG that references its own series (which stays in the PACS); any other case gets its CT written
  as a DICOM series (``<case>/ct/``, UIDs derived from the case, so a second release writes the same
  series) and a SEG that references it.

Every writer takes the canonical CT and label map as stored and writes them unchanged in voxels
and geometry: the label map of a case lies on its CT's grid in every layout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom

from atlasloop.common.objectstore import sha256_file
from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.dicom_seg import SegProvenance, write_seg
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti

FORMATS = ("abdomenatlas", "nnunet", "msd", "dicom-seg")
SEG_NAME = "seg.dcm"


def write_case(
    fmt: str,
    out: Path,
    case_id: str,
    ct: Path,
    labels: Path,
    classes: Mapping[int, str],
    provenance: SegProvenance | None = None,
    seg: Path | None = None,
) -> list[Path]:
    """Write one case into ``out`` in ``fmt``; the files written. For ``dicom-seg``: ``seg`` is the
    case's own SEG (from storage) when it came from DICOM, else ``provenance`` says who made the
    label the SEG is built from."""
    if fmt == "abdomenatlas":
        return _abdomenatlas(out / case_id, ct, labels, classes)
    if fmt in ("nnunet", "msd"):
        image = f"{case_id}_0000.nii.gz" if fmt == "nnunet" else f"{case_id}.nii.gz"  # nnU-Net numbers channels
        return [_copy(ct, out / "imagesTr" / image), _copy(labels, out / "labelsTr" / f"{case_id}.nii.gz")]
    if fmt == "dicom-seg":
        if seg is not None:
            return [_copy(seg, out / case_id / SEG_NAME)]
        if provenance is None:
            raise ValueError(f"case {case_id}: a SEG needs the label's provenance")
        return _dicom_seg(out / case_id, case_id, ct, labels, provenance)
    raise ValueError(f"unknown release format {fmt!r} (one of {', '.join(FORMATS)})")


def write_index(
    fmt: str, out: Path, case_ids: list[str], classes: Mapping[int, str], name: str, description: str
) -> list[Path]:
    """The format's dataset-level file, if it has one."""
    if fmt == "nnunet":
        index = {
            "name": name,
            "description": description,
            "channel_names": {"0": "CT"},
            "labels": {structure: value for value, structure in sorted(classes.items())},
            "numTraining": len(case_ids),
            "file_ending": ".nii.gz",
        }
    elif fmt == "msd":
        index = {
            "name": name,
            "description": description,
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": {str(value): structure for value, structure in sorted(classes.items())},
            "numTraining": len(case_ids),
            "numTest": 0,
            "training": [
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"} for case in case_ids
            ],
            "test": [],
        }
    else:
        return []
    path = out / "dataset.json"
    path.write_text(json.dumps(index, indent=2) + "\n")
    return [path]


def _copy(source: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


def _abdomenatlas(folder: Path, ct: Path, labels: Path, classes: Mapping[int, str]) -> list[Path]:
    written = [_copy(ct, folder / "ct.nii.gz"), _copy(labels, folder / "combined_labels.nii.gz")]
    label_map = load_nifti(labels, labels=True)
    for value, structure in sorted(classes.items()):
        if value == 0:
            continue
        mask = label_map.with_array((label_map.array == value).astype(np.uint8))
        written.append(save_nifti(mask, folder / "segmentations" / f"{structure}.nii.gz"))
    return written


def _dicom_seg(folder: Path, case_id: str, ct: Path, labels: Path, provenance: SegProvenance) -> list[Path]:
    volume: Volume = load_nifti(ct)
    slices = write_series(
        volume, folder / "ct", shuffle_names=False, uid_seed=f"atlasloop/{case_id}", tags={"SeriesDescription": case_id}
    )
    _, identity = read_series(folder / "ct")
    path = folder / SEG_NAME
    path.write_bytes(write_seg(load_nifti(labels, labels=True), identity, provenance))
    return [*slices, path]


def verify(folder: Path) -> list[str]:
    """What is wrong with a written release (nothing: an empty list), read back the way its format's
    own tools read it: every file the manifest lists, with its checksum; label maps on their CT's
    grid with only declared classes; for ``nnunet`` the rules of nnU-Net v2's dataset checker
    (``verify_dataset_integrity``: required ``dataset.json`` keys, background 0 and consecutive
    labels, ``numTraining`` equal to the cases found, every channel of every case, matching shape,
    spacing, origin and direction); for ``msd`` every datalist entry; for ``dicom-seg`` every SEG
    parsed by highdicom and referencing only slices of its series."""
    manifest = json.loads((folder / "manifest.json").read_text())
    problems = [
        f"{name}: checksum differs"
        for entry in [*manifest["cases"], {"files": manifest.get("files", {})}]
        for name, sha in entry["files"].items()
        if not (folder / name).is_file() or sha256_file(folder / name) != sha
    ]
    classes = {int(k): v for k, v in manifest["classes"].items()}
    fmt = manifest["format"]
    case_ids = [c["case_id"] for c in manifest["cases"]]
    if fmt == "abdomenatlas":
        for case in case_ids:
            problems += _pair(folder / case / "ct.nii.gz", folder / case / "combined_labels.nii.gz", classes)
            problems += _masks(folder / case, classes)
    elif fmt == "nnunet":
        problems += _nnunet(folder)
    elif fmt == "msd":
        index = json.loads((folder / "dataset.json").read_text())
        if index["numTraining"] != len(index["training"]) or len(index["training"]) != len(case_ids):
            problems.append("dataset.json: numTraining differs from the training list or the cases")
        declared = {int(k): v for k, v in index["labels"].items()}
        for item in index["training"]:
            problems += _pair(folder / item["image"], folder / item["label"], declared)
    elif fmt == "dicom-seg":
        problems += [p for case in manifest["cases"] for p in _seg(folder / case["case_id"], case)]
    else:
        problems.append(f"unknown format {fmt!r}")
    return problems


def _pair(image_path: Path, label_path: Path, classes: Mapping[int, str]) -> list[str]:
    if not image_path.is_file() or not label_path.is_file():
        return [f"{label_path.name}: image or label file missing"]
    image: Any = nib.load(image_path)
    label: Any = nib.load(label_path)
    problems = []
    if image.shape != label.shape:
        problems.append(f"{label_path.name}: shape {label.shape} differs from the image's {image.shape}")
    elif not np.allclose(image.affine, label.affine, rtol=1e-3, atol=1e-4):  # nnU-Net's tolerance
        problems.append(f"{label_path.name}: spacing, origin or direction differs from the image's")
    found = set(np.unique(np.asarray(label.dataobj)).astype(int).tolist())
    if found - set(classes):
        problems.append(f"{label_path.name}: values {sorted(found - set(classes))} are not declared classes")
    return problems


def _masks(case: Path, classes: Mapping[int, str]) -> list[str]:
    combined = _voxels(case / "combined_labels.nii.gz")
    problems = []
    for value, structure in classes.items():
        if value == 0:
            continue
        path = case / "segmentations" / f"{structure}.nii.gz"
        if not path.is_file() or not np.array_equal(_voxels(path) != 0, combined == value):
            problems.append(f"{case.name}/segmentations/{structure}.nii.gz: not the {structure} of combined_labels")
    return problems


def _voxels(path: Path) -> np.ndarray:
    image: Any = nib.load(path)
    return np.asarray(image.dataobj)


def _nnunet(folder: Path) -> list[str]:
    index = json.loads((folder / "dataset.json").read_text())
    missing = [k for k in ("labels", "channel_names", "numTraining", "file_ending") if k not in index]
    if missing:
        return [f"dataset.json lacks {missing}"]
    labels = index["labels"]
    values = sorted(int(v) for v in labels.values())
    problems = []
    if labels.get("background") != 0:
        problems.append("dataset.json: background must be label 0")
    if values != list(range(len(values))):
        problems.append("dataset.json: labels must be consecutive integers from 0")
    ending = index["file_ending"]
    cases = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").glob(f"*{ending}"))
    if index["numTraining"] != len(cases):
        problems.append(f"dataset.json: numTraining {index['numTraining']} but {len(cases)} cases in labelsTr")
    channels = sorted(int(c) for c in index["channel_names"])
    images = {p.name for p in (folder / "imagesTr").glob(f"*{ending}")}
    expected = {f"{case}_{c:04d}{ending}" for case in cases for c in channels}
    if images != expected:
        problems.append(f"imagesTr: {sorted(images ^ expected)[:5]} missing or not a case's channel")
    declared = {int(v): k for k, v in labels.items()}
    for case in cases:
        for c in channels:
            image = folder / "imagesTr" / f"{case}_{c:04d}{ending}"
            problems += _pair(image, folder / "labelsTr" / f"{case}{ending}", declared)
    return problems


def _seg(folder: Path, case: Mapping[str, Any]) -> list[str]:
    try:
        seg = hd.seg.segread(folder / SEG_NAME)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
        return [f"{folder.name}/{SEG_NAME}: highdicom cannot read it ({exc})"]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    series = {s for _, s, _ in seg.get_source_image_uids()}  # (study, series, instance)
    problems = []
    if (folder / "ct").is_dir():
        slices = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in (folder / "ct").glob("*.dcm")}
        if referenced != slices:
            problems.append(f"{folder.name}/{SEG_NAME}: references other instances than its ct/ series")
    elif series != {case.get("series_instance_uid")}:
        problems.append(f"{folder.name}/{SEG_NAME}: references series {sorted(series)}, not the case's")
    return problems
