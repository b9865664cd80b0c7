"""The label schema: AbdomenAtlas 1.0 ids, owned here and nowhere else.

``0 background, 1 aorta, 2 gall_bladder, 3 kidney_left, 4 kidney_right, 5 liver, 6 pancreas,
7 postcava, 8 spleen, 9 stomach`` — the ids of the released dataset, so its files load as they
are, and the numbering of ``atlasloop.common.v1.Organ``. Importers map other class maps onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from atlasloop.imaging.errors import ImageError

ORGANS: dict[int, str] = {
    1: "aorta",
    2: "gall_bladder",
    3: "kidney_left",
    4: "kidney_right",
    5: "liver",
    6: "pancreas",
    7: "postcava",
    8: "spleen",
    9: "stomach",
}
ORGAN_IDS: dict[str, int] = {name: label for label, name in ORGANS.items()}
NUM_CLASSES = len(ORGANS) + 1  # with background
# Display colours (RGB), fixed so every picture and viewer export agrees; 3D Slicer-like hues.
ORGAN_COLORS: dict[str, tuple[int, int, int]] = {
    "aorta": (224, 97, 76),
    "gall_bladder": (139, 150, 98),
    "kidney_left": (185, 102, 83),
    "kidney_right": (212, 126, 151),
    "liver": (221, 130, 101),
    "pancreas": (249, 180, 111),
    "postcava": (0, 151, 206),
    "spleen": (157, 108, 162),
    "stomach": (216, 191, 216),
}
# Vessels are excluded from the method's overlap signal (never aorta or postcava).
VESSELS = frozenset({"aorta", "postcava"})

# TotalSegmentator v2 ids of the nine target classes.
TOTALSEGMENTATOR_V2: dict[int, str] = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gall_bladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
    52: "aorta",
    63: "postcava",
}
# TotalSegmentator v2 ids of the other non-vessel structures the reference's overlap list names.
TOTALSEGMENTATOR_V2_SURROUNDING: dict[int, str] = {
    8: "adrenal_gland_right",
    9: "adrenal_gland_left",
    10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left",
    12: "lung_upper_lobe_right",
    13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
    15: "esophagus",
    18: "small_bowel",
    19: "duodenum",
    20: "colon",
    21: "urinary_bladder",
    22: "prostate",
    75: "femur_left",
    76: "femur_right",
}
# Other names an organ goes by in per-organ mask folders.
ALIASES: dict[str, str] = {
    "gallbladder": "gall_bladder",
    "inferior_vena_cava": "postcava",
    "ivc": "postcava",
    "kidney_l": "kidney_left",
    "kidney_r": "kidney_right",
    "left_kidney": "kidney_left",
    "right_kidney": "kidney_right",
}


def organ_name(label: int) -> str:
    return ORGANS[label]


def canonical_name(name: str) -> str:
    """The schema's name for an organ name or alias; refuses names outside the schema."""
    key = name.strip().lower().removesuffix(".nii.gz").removesuffix(".nii")
    key = ALIASES.get(key, key)
    if key not in ORGAN_IDS:
        raise ImageError(None, f"{name!r} is not one of the organs {', '.join(ORGAN_IDS)}")
    return key


def validate_label_map(array: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """Return the map as uint8 after checking every id is in the schema."""
    if array.dtype.kind == "f" and (not np.all(np.isfinite(array)) or not np.all(array == np.round(array))):
        raise ImageError(source, "label map holds non-integer values")
    present = np.unique(array)
    bad = [int(v) for v in present if not 0 <= v < NUM_CLASSES]
    if bad:
        raise ImageError(source, f"label ids {bad[:10]} are outside the schema 0..{NUM_CLASSES - 1}")
    return array.astype(np.uint8, copy=False)


def remap(array: np.ndarray, mapping: Mapping[int, str]) -> np.ndarray:
    """Map another class map's ids to the schema; ids not in ``mapping`` become background."""
    lut = np.zeros(max(int(array.max(initial=0)), max(mapping)) + 1, dtype=np.uint8)
    for source_id, name in mapping.items():
        lut[source_id] = ORGAN_IDS[name]
    if array.min(initial=0) < 0:
        raise ImageError(None, "label map holds negative ids")
    return lut[array.astype(np.int64, copy=False)]


def from_totalsegmentator(array: np.ndarray) -> np.ndarray:
    """A TotalSegmentator v2 label map in AbdomenAtlas ids."""
    return remap(array, TOTALSEGMENTATOR_V2)


def census(array: np.ndarray, voxel_volume_ml: float) -> dict[str, tuple[int, float]]:
    """Voxel count and volume (mL) per present organ, in id order."""
    counts = np.bincount(array.ravel(), minlength=NUM_CLASSES)
    return {ORGANS[i]: (int(counts[i]), float(counts[i] * voxel_volume_ml)) for i in ORGANS if counts[i] > 0}
