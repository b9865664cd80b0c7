"""The project's label schema as the rest of the code reads it: ids, names, colours, vessels.

The schema is the process's configured one (:mod:`atlasloop.imaging.schema`,
``ATLASLOOP_LABEL_SCHEMA``), by default AbdomenAtlas 1.0: ``0 background, 1 aorta, 2 gall_bladder,
3 kidney_left, 4 kidney_right, 5 liver, 6 pancreas, 7 postcava, 8 spleen, 9 stomach``, the ids of
the released dataset, so its files load as they are. Protos carry a structure as its id in this
schema. Importers map other class maps onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.schema import LabelSchema, configured_schema

# The project's schema, read once per process: every service of a deployment labels the same one.
SCHEMA: LabelSchema = configured_schema()
ORGANS: dict[int, str] = SCHEMA.names
ORGAN_IDS: dict[str, int] = SCHEMA.ids
NUM_CLASSES = SCHEMA.num_classes  # with background
# Display colours (RGB), fixed so every picture and viewer export agrees.
ORGAN_COLORS: dict[str, tuple[int, int, int]] = SCHEMA.colors
# Vessels are excluded from the method's overlap signal (in AbdomenAtlas 1.0: aorta and postcava).
VESSELS = SCHEMA.vessels

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
# Every TotalSegmentator v2 class a project's schema may hold (the CLI's and the importers' one map).
TOTALSEGMENTATOR_V2_ALL: dict[int, str] = {**TOTALSEGMENTATOR_V2, **TOTALSEGMENTATOR_V2_SURROUNDING}
# Other names an organ goes by in per-organ mask folders.
ALIASES: dict[str, str] = SCHEMA.aliases


def organ_name(label: int) -> str:
    return ORGANS[label]


def canonical_name(name: str) -> str:
    """The schema's name for an organ name or alias; refuses names outside the schema."""
    key = name.strip().lower().removesuffix(".nii.gz").removesuffix(".nii").replace(" ", "_").replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in ORGAN_IDS:
        raise ImageError(None, f"{name!r} is not one of the organs {', '.join(ORGAN_IDS)}")
    return key


def validate_label_map(array: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """Return the map as uint8 after checking every id is in the schema."""
    if array.dtype.kind == "f" and (not np.all(np.isfinite(array)) or not np.all(array == np.round(array))):
        raise ImageError(source, "label map holds non-integer values")
    present = np.unique(array)
    bad = [int(v) for v in present if v != 0 and v not in ORGANS]
    if bad:
        raise ImageError(source, f"label ids {bad[:10]} are outside the schema {SCHEMA.name} (0 and {sorted(ORGANS)})")
    return array.astype(np.uint8, copy=False)


def remap(array: np.ndarray, mapping: Mapping[int, str], drop_unknown: bool = False) -> np.ndarray:
    """Map another class map's ids to the schema; ids not in ``mapping`` become background, and so
    do names the schema does not hold when ``drop_unknown`` (otherwise they are refused)."""
    lut = np.zeros(max(int(array.max(initial=0)), max(mapping)) + 1, dtype=np.uint8)
    for source_id, name in mapping.items():
        key = ALIASES.get(name, name)
        if key in ORGAN_IDS:
            lut[source_id] = ORGAN_IDS[key]
        elif not drop_unknown:
            raise ImageError(None, f"class {source_id} ({name}) is not a structure of the schema {SCHEMA.name}")
    if array.min(initial=0) < 0:
        raise ImageError(None, "label map holds negative ids")
    return lut[array.astype(np.int64, copy=False)]


def from_totalsegmentator(array: np.ndarray) -> np.ndarray:
    """A TotalSegmentator v2 label map in the project's ids: every class the schema holds (by name
    or alias), the rest background."""
    return remap(array, TOTALSEGMENTATOR_V2_ALL, drop_unknown=True)


def census(array: np.ndarray, voxel_volume_ml: float) -> dict[str, tuple[int, float]]:
    """Voxel count and volume (mL) per present organ, in id order."""
    counts = np.bincount(array.ravel(), minlength=NUM_CLASSES)
    return {ORGANS[i]: (int(counts[i]), float(counts[i] * voxel_volume_ml)) for i in ORGANS if counts[i] > 0}
