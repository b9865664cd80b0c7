"""Import and export of the AbdomenAtlas case layout and of per-organ mask folders.

``<case>/ct.nii.gz``, ``<case>/combined_labels.nii.gz`` and ``<case>/segmentations/<organ>.nii.gz``.
On import, ``combined_labels`` wins when present; otherwise the per-organ masks are combined, in
schema id order, so where two masks overlap the higher id is kept (documented, deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS, canonical_name, validate_label_map
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti

CT_FILE = "ct.nii.gz"
COMBINED_FILE = "combined_labels.nii.gz"
MASK_DIR = "segmentations"


@dataclass
class AtlasCase:
    """A case in the AbdomenAtlas layout: the CT and, when present, its label map."""

    name: str
    ct: Volume
    labels: Volume | None


def combine_masks(folder: Path, reference: Volume) -> Volume:
    """One label map from ``<organ>.nii.gz`` masks (names or aliases) on the reference grid."""
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise ImageError(folder, "no organ masks (<organ>.nii.gz) in the folder")
    masks: dict[int, np.ndarray] = {}
    for path in files:
        label = ORGAN_IDS[canonical_name(path.name)]
        mask = load_nifti(path)
        if mask.shape != reference.shape or not np.allclose(mask.affine, reference.affine, atol=1e-3):
            raise ImageError(path, f"grid {mask.shape} does not match the CT's {reference.shape}")
        masks[label] = mask.array > 0
    combined = np.zeros(reference.shape, dtype=np.uint8)
    for label in sorted(masks):
        combined[masks[label]] = label
    return reference.with_array(combined)


def read_case(folder: str | Path) -> AtlasCase:
    folder = Path(folder)
    ct = load_nifti(folder / CT_FILE)
    labels: Volume | None = None
    if (folder / COMBINED_FILE).exists():
        labels = load_nifti(folder / COMBINED_FILE, labels=True)
        if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
            raise ImageError(folder / COMBINED_FILE, "label grid does not match the CT")
        labels = labels.with_array(validate_label_map(labels.array, folder / COMBINED_FILE))
    elif (folder / MASK_DIR).is_dir():
        labels = combine_masks(folder / MASK_DIR, ct)
    return AtlasCase(folder.name, ct, labels)


def write_case(case: AtlasCase, root: str | Path, masks: bool = True) -> Path:
    folder = Path(root) / case.name
    save_nifti(case.ct, folder / CT_FILE)
    if case.labels is not None:
        labels = case.labels.with_array(validate_label_map(case.labels.array))
        save_nifti(labels, folder / COMBINED_FILE)
        if masks:
            for label, name in ORGANS.items():
                save_nifti(
                    labels.with_array((labels.array == label).astype(np.uint8)), folder / MASK_DIR / f"{name}.nii.gz"
                )
    return folder
