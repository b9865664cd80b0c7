"""The published scripts' on-disk layout, so their users can switch to AtlasLoop's scorer.

Input, per case folder: ``backbones/<model>/soft_pred/<organ>.nii.gz`` (uint8), optionally
``backbones/<model>/entropy/<organ>.nii.gz`` (uint8; computed from the soft map when absent) and
``average/segmentations/<structure>.nii.gz`` (the ensemble's pseudo-labels, targets and any of the
overlap list). Output: ``<case>/average/attention/<organ>.nii.gz`` (uint8, 255 x heat, truncated),
``priority.csv`` in the reference's format (one row per case, highest priority first: the case,
then its organs with non-zero attention by attention sum), and beside each case's attention
``scores.json`` (priority, organ scores, plausibility flags) and ``regions.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from atlasloop.imaging.compact import Cropped, EnsembleOutput
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.method.case_scoring import CaseResult
from atlasloop.method.structures import OVERLAP_STRUCTURES, TARGETS


def _uint8(path: Path, shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    volume = load_nifti(path)
    if shape is not None and volume.shape != shape:
        raise ImageError(path, f"grid {volume.shape} differs from the case's {shape}")
    data = volume.array
    if data.dtype != np.uint8:
        if data.min() < 0 or data.max() > 255 or not np.all(data == np.round(data)):
            raise ImageError(path, "values must be whole numbers in 0..255 (uint8, x255 quantised)")
        data = data.astype(np.uint8)
    return data, volume.affine


def case_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if (p / "backbones").is_dir())
    if not folders:
        raise ImageError(root, "no case folders with backbones/<model>/soft_pred/ found")
    return folders


def read_case(folder: Path) -> EnsembleOutput:
    models = sorted(p.name for p in (folder / "backbones").iterdir() if p.is_dir())
    if not models:
        raise ImageError(folder, "backbones/ holds no model folders")
    shape: tuple[int, ...] | None = None
    affine = None
    output: EnsembleOutput | None = None
    for model in models:
        for organ in TARGETS:
            soft_path = folder / "backbones" / model / "soft_pred" / f"{organ}.nii.gz"
            if not soft_path.exists():
                raise ImageError(soft_path, f"model {model!r} has no soft prediction for {organ}")
            soft, affine = _uint8(soft_path, shape)
            if output is None:
                shape = soft.shape
                output = EnsembleOutput(soft.shape, affine, models)
            output.soft.setdefault(model, {})[organ] = Cropped.of(soft)
            entropy_path = folder / "backbones" / model / "entropy" / f"{organ}.nii.gz"
            if entropy_path.exists():
                output.entropy.setdefault(model, {})[organ] = Cropped.of(_uint8(entropy_path, shape)[0])
    assert output is not None
    segmentations = folder / "average" / "segmentations"
    for structure in dict.fromkeys((*TARGETS, *OVERLAP_STRUCTURES)):
        path = segmentations / f"{structure}.nii.gz"
        if path.exists():
            output.pseudo[structure] = Cropped.of(_uint8(path, shape)[0] > 0)
    return output


def write_case(folder: Path, output: EnsembleOutput, result: CaseResult) -> None:
    attention_dir = folder / "average" / "attention"
    for organ in result.organs:
        save_nifti(Volume(organ.attention.full(output.shape), output.affine), attention_dir / f"{organ.organ}.nii.gz")
    scores = result.as_json()
    regions = scores.pop("regions")
    (attention_dir / "scores.json").write_text(json.dumps(scores, indent=2))
    (attention_dir / "regions.json").write_text(json.dumps(regions, indent=2))


def write_priority(path: Path, results: list[CaseResult]) -> None:
    ranked = sorted(results, key=lambda r: -r.priority)  # stable: ties keep case order
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=",", quotechar='"')
        for result in ranked:
            writer.writerow([result.case_id, *result.organ_order()])
