"""Anatomical plausibility checks on a prediction, the errors attention maps cannot see: an organ
missing or in pieces, a volume no adult has, left and right swapped, organs touching that never
touch. Each check is a small function registered by name.

Volume ranges are a project's: the adult defaults below, with a project's own for any organ
(:func:`volume_ranges`; the scoring service's ``VOLUME_RANGES_ML``, ``atlasloop score
--volume-ranges``). A paediatric cohort needs its own; so does the demo's synthetic cohort of
half-size bodies, whose organs are an eighth of an adult's: with the adult ranges two thirds of its
organs were flagged, which hid every real flag and kept the improved scoring from trusting any
organ (docs/adr/0010)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.compact import Box, Cropped, grow, union_box
from atlasloop.imaging.labels import SCHEMA
from atlasloop.imaging.volume import voxel_volume_ml

# Plausible volumes in mL per structure, from the project's schema (AbdomenAtlas 1.0: adult
# volumes, about the 1st and 99th percentiles of abdominal CT studies). A structure without a
# range is checked neither for volume nor for absence.
VOLUME_RANGE_ML: dict[str, tuple[float, float]] = SCHEMA.volume_ranges_ml
VolumeRanges = Mapping[str, tuple[float, float]]


def volume_ranges(overrides: Mapping[str, Sequence[float]] | None = None) -> dict[str, tuple[float, float]]:
    """The schema's ranges, with ``overrides`` (organ -> [low, high] mL) in their place or added
    for a structure the schema gives none; every organ must be one of the schema's and
    0 <= low < high, finite."""
    ranges = dict(VOLUME_RANGE_ML)
    for organ, bounds in (overrides or {}).items():
        if organ not in SCHEMA.ids:
            raise ValueError(f"volume range for unknown organ {organ!r}; organs: {', '.join(SCHEMA.ids)}")
        values = list(bounds)
        if len(values) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise ValueError(f"volume range of {organ} must be [low, high] in mL, got {bounds!r}")
        low, high = float(values[0]), float(values[1])
        if not 0 <= low < high:
            raise ValueError(f"volume range of {organ} must have 0 <= low < high, got [{low}, {high}]")
        ranges[organ] = (low, high)
    return ranges


MAX_RANGES_FILE_BYTES = 64 * 1024


def read_volume_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """:func:`volume_ranges` from a JSON file of {organ: [low, high]} (at most 64 KiB); anything
    else is refused as invalid input, naming the file."""
    with path.open("rb") as f:
        data = f.read(MAX_RANGES_FILE_BYTES + 1)
    if len(data) > MAX_RANGES_FILE_BYTES:
        raise InvalidInput(f"{path}: a volume ranges file is at most {MAX_RANGES_FILE_BYTES} bytes")
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("expected {organ: [low_ml, high_ml]}")
        return volume_ranges(document)
    except ValueError as exc:  # json's decode errors are ValueErrors too
        raise InvalidInput(f"{path}: {exc}") from None


def scaled_volume_ranges(body_scale: float) -> dict[str, tuple[float, float]]:
    """The adult ranges for bodies ``body_scale`` times an adult's in every direction (volume: cubed)."""
    if not 0 < body_scale <= 2:
        raise ValueError(f"body scale must be in (0, 2], got {body_scale}")
    factor = body_scale**3
    return {organ: (low * factor, high * factor) for organ, (low, high) in VOLUME_RANGE_ML.items()}


OPTIONAL = SCHEMA.optional  # may be absent (a removed gall bladder, a structure outside the field of view)
# Pairs that do not touch in normal anatomy.
NO_CONTACT = SCHEMA.must_not_touch
# (left structure, right structure): in RAS the patient's left has the smaller x.
LATERAL = SCHEMA.laterality


@dataclass
class Prediction:
    """Pseudo-label masks of one case and their grid."""

    pseudo: Mapping[str, Cropped]
    affine: np.ndarray
    members_mean_over_half: Mapping[str, Cropped]  # mean of member soft maps > 0.5, before any LCC
    volume_ranges_ml: VolumeRanges = field(default_factory=lambda: VOLUME_RANGE_ML)  # the project's

    @property
    def voxel_ml(self) -> float:
        return voxel_volume_ml(self.affine)

    def volume_ml(self, organ: str) -> float:
        crop = self.pseudo.get(organ)
        return float(np.count_nonzero(crop.data)) * self.voxel_ml if crop and crop.box else 0.0

    def centroid_x(self, organ: str) -> float | None:
        crop = self.pseudo.get(organ)
        if not crop or crop.box is None or not crop.data.any():
            return None
        ijk = np.argwhere(crop.data).mean(axis=0) + [lo for lo, _ in crop.box]
        return float((self.affine[:3, :3] @ ijk + self.affine[:3, 3])[0])


Flags = dict[str, list[str]]


def missing(p: Prediction) -> Flags:
    return {o: ["missing"] for o in VOLUME_RANGE_ML if o not in OPTIONAL and p.volume_ml(o) == 0}


def volume(p: Prediction) -> Flags:
    out: Flags = {}
    for organ, (low, high) in p.volume_ranges_ml.items():
        ml = p.volume_ml(organ)
        if ml > 0 and not low <= ml <= high:
            out[organ] = ["volume"]
    return out


def fragments(p: Prediction, min_fraction: float = 0.05) -> Flags:
    out: Flags = {}
    for organ, crop in p.members_mean_over_half.items():
        if crop.box is None:
            continue
        labels, count = ndimage.label(crop.data, structure=ndimage.generate_binary_structure(3, 3))
        if count > 1:
            sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
            if sizes[1] >= min_fraction * sizes[0]:
                out[organ] = ["fragmented"]
    return out


def laterality(p: Prediction) -> Flags:
    out: Flags = {}
    for left, right in LATERAL:
        xl, xr = p.centroid_x(left), p.centroid_x(right)
        if xl is not None and xr is not None and xl > xr:
            out.setdefault(left, []).append("laterality")
            out.setdefault(right, []).append("laterality")
    return out


def contact_zone(p: Prediction, a: str, b: str) -> tuple[Box, np.ndarray] | None:
    ca, cb = p.pseudo.get(a), p.pseudo.get(b)
    if not ca or not cb or ca.box is None or cb.box is None:
        return None
    shape = tuple(max(x[1], y[1]) + 2 for x, y in zip(ca.box, cb.box, strict=True))
    box = grow(union_box([ca.box, cb.box]), 1, shape)  # type: ignore[arg-type]
    ma, mb = ca.read(box).astype(bool), cb.read(box).astype(bool)
    zone = ndimage.binary_dilation(ma) & mb | ndimage.binary_dilation(mb) & ma
    return (box, zone) if zone.any() else None


def contact(p: Prediction) -> Flags:
    out: Flags = {}
    for a, b in NO_CONTACT:
        if contact_zone(p, a, b) is not None:
            out.setdefault(a, []).append("contact")
            out.setdefault(b, []).append("contact")
    return out


CHECKS: dict[str, Callable[[Prediction], Flags]] = {
    "missing": missing,
    "volume": volume,
    "fragments": fragments,
    "laterality": laterality,
    "contact": contact,
}


def run_checks(p: Prediction, names: tuple[str, ...] = tuple(CHECKS)) -> Flags:
    flags: Flags = {}
    for name in names:
        for organ, found in CHECKS[name](p).items():
            flags.setdefault(organ, []).extend(found)
    return flags
