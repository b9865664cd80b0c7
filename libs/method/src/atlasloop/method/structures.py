"""Names the scoring method works with, as the reference code spells them."""

from __future__ import annotations

from atlasloop.imaging.labels import ORGANS

# The target organs in the reference's file names (identical to the schema's names).
TARGETS: tuple[str, ...] = tuple(ORGANS.values())

# The reference's overlap list: 20 non-vessel structures, never aorta or postcava.
OVERLAP_STRUCTURES: tuple[str, ...] = (
    "spleen",
    "kidney_right",
    "kidney_left",
    "gall_bladder",
    "esophagus",
    "liver",
    "stomach",
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "duodenum",
    "lung_right",
    "lung_left",
    "colon",
    "intestine",
    "rectum",
    "bladder",
    "prostate",
    "femur_left",
    "femur_right",
)
