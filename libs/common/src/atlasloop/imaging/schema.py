"""Label schemas: which structures a project labels, their ids, colours and anatomy rules.

A project (one deployment: one bucket, one database) labels one schema, chosen when it is installed
and the same in every process: ``ATLASLOOP_LABEL_SCHEMA`` names a built-in schema
(``abdomenatlas-1.0``, the default, or ``abdomenatlas-1.1``) or a JSON file. The first service to
reach the bucket records the schema there, and a service configured with another one stays not
ready (:mod:`atlasloop.common.project_schema`), because every stored label map, model and event
carries the schema's ids. Why a process-wide setting rather than a field of each request: a
deployment is one project, its networks are built with one number of output channels, and an id
means one structure everywhere it is stored.

A schema file (at most 256 KiB)::

    {"name": "my-project-v1",
     "structures": [
        {"id": 1, "name": "aorta", "color": [224, 97, 76], "vessel": true,
         "volume_ml": [15, 300], "aliases": ["abdominal_aorta"]},
        {"id": 2, "name": "liver", "color": [221, 130, 101], "volume_ml": [700, 3000]},
        {"id": 3, "name": "gall_bladder", "color": [139, 150, 98], "optional": true}],
     "laterality": [["kidney_left", "kidney_right"]],
     "must_not_touch": [["liver", "kidney_left"]]}

- ``id``: the voxel value, 1..255 (0 is background); ids need not be consecutive.
- ``volume_ml``: the plausible volume; a structure without one is not checked for volume or
  absence. ``optional``: may be absent from a normal scan (a removed gall bladder, a prostate in a
  woman, a lung outside the field of view) and is not flagged missing.
- ``vessel``: excluded from the method's overlap signal, as the reference excludes aorta and
  postcava.
- ``laterality``: (left, right) pairs; a prediction with the left one on the right is flagged.
- ``must_not_touch``: pairs that never touch in normal anatomy; touching is flagged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlasloop.common.errors import InvalidInput

SCHEMA_ENV = "ATLASLOOP_LABEL_SCHEMA"
DEFAULT_SCHEMA = "abdomenatlas-1.0"
MAX_SCHEMA_FILE_BYTES = 256 * 1024
MAX_ID = 255  # label maps are uint8

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Structure:
    """One labelled structure of a schema."""

    id: int
    name: str
    color: tuple[int, int, int]
    volume_ml: tuple[float, float] | None = None
    optional: bool = False
    vessel: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSchema:
    """A validated schema; build one with :func:`schema_from_dict`, :func:`load_schema` or :func:`builtin`."""

    name: str
    structures: tuple[Structure, ...]
    laterality: tuple[tuple[str, str], ...] = ()
    must_not_touch: tuple[tuple[str, str], ...] = ()
    _by_name: dict[str, Structure] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({s.name: s for s in self.structures})

    # The views the rest of the code reads (``atlasloop.imaging.labels`` exports them).
    @property
    def names(self) -> dict[int, str]:
        """id -> name, in id order."""
        return {s.id: s.name for s in self.structures}

    @property
    def ids(self) -> dict[str, int]:
        return {s.name: s.id for s in self.structures}

    @property
    def num_classes(self) -> int:
        """Channels a network predicts: background and every id up to the largest."""
        return max(s.id for s in self.structures) + 1

    @property
    def colors(self) -> dict[str, tuple[int, int, int]]:
        return {s.name: s.color for s in self.structures}

    @property
    def vessels(self) -> frozenset[str]:
        return frozenset(s.name for s in self.structures if s.vessel)

    @property
    def optional(self) -> frozenset[str]:
        return frozenset(s.name for s in self.structures if s.optional)

    @property
    def volume_ranges_ml(self) -> dict[str, tuple[float, float]]:
        return {s.name: s.volume_ml for s in self.structures if s.volume_ml is not None}

    @property
    def aliases(self) -> dict[str, str]:
        return {alias: s.name for s in self.structures for alias in s.aliases}

    def structure(self, name: str) -> Structure:
        if name not in self._by_name:
            raise InvalidInput(f"{name!r} is not a structure of the schema {self.name} ({', '.join(self._by_name)})")
        return self._by_name[name]

    def to_dict(self) -> dict[str, Any]:
        """The file form; :func:`schema_from_dict` of it gives an equal schema."""
        items: list[dict[str, Any]] = []
        for s in self.structures:
            item: dict[str, Any] = {"id": s.id, "name": s.name, "color": list(s.color)}
            if s.volume_ml is not None:
                item["volume_ml"] = list(s.volume_ml)
            if s.optional:
                item["optional"] = True
            if s.vessel:
                item["vessel"] = True
            if s.aliases:
                item["aliases"] = list(s.aliases)
            items.append(item)
        return {
            "name": self.name,
            "structures": items,
            "laterality": [list(p) for p in self.laterality],
            "must_not_touch": [list(p) for p in self.must_not_touch],
        }

    def canonical_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: two processes agree on the schema exactly when these match."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


def _fail(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"label schema {where}: {problem}")


def _pairs(raw: object, key: str, names: set[str], where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(where, f"{key} must be a list of [name, name] pairs")
    pairs = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str) for n in pair)):
            raise _fail(where, f"{key} entry {pair!r} is not a [name, name] pair")
        a, b = pair
        unknown = [n for n in (a, b) if n not in names]
        if unknown:
            raise _fail(where, f"{key} names {unknown} that are not structures of the schema")
        if a == b:
            raise _fail(where, f"{key} pairs {a!r} with itself")
        pairs.append((a, b))
    return tuple(pairs)


def _structure(raw: object, index: int, where: str) -> Structure:
    if not isinstance(raw, dict):
        raise _fail(where, f"structure {index} is not an object")
    unknown_keys = set(raw) - {"id", "name", "color", "volume_ml", "optional", "vessel", "aliases"}
    if unknown_keys:
        raise _fail(where, f"structure {index} has unknown keys {sorted(unknown_keys)}")
    sid, name = raw.get("id"), raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(where, f"structure {index}: name {name!r} must be lower-case letters, digits and _")
    if not isinstance(sid, int) or isinstance(sid, bool) or not 1 <= sid <= MAX_ID:
        raise _fail(where, f"{name}: id {sid!r} must be an integer in 1..{MAX_ID} (0 is background)")
    color = raw.get("color")
    if not (
        isinstance(color, list)
        and len(color) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
    ):
        raise _fail(where, f"{name}: color must be [r, g, b] with integers 0..255, got {color!r}")
    volume = raw.get("volume_ml")
    bounds: tuple[float, float] | None = None
    if volume is not None:
        if not (
            isinstance(volume, list)
            and len(volume) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in volume)
            and 0 <= volume[0] < volume[1]
        ):
            raise _fail(where, f"{name}: volume_ml must be [low, high] mL with 0 <= low < high, got {volume!r}")
        bounds = (float(volume[0]), float(volume[1]))
    flags = {}
    for key in ("optional", "vessel"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise _fail(where, f"{name}: {key} must be true or false")
        flags[key] = value
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME.match(a) for a in aliases):
        raise _fail(where, f"{name}: aliases must be a list of lower-case names")
    return Structure(
        sid, name, (color[0], color[1], color[2]), bounds, flags["optional"], flags["vessel"], tuple(aliases)
    )


def schema_from_dict(raw: object, where: str = "<memory>") -> LabelSchema:
    """A schema from its file form, every rule checked; the message names what is wrong."""
    if not isinstance(raw, dict):
        raise _fail(where, "must be a JSON object")
    unknown_keys = set(raw) - {"name", "structures", "laterality", "must_not_touch"}
    if unknown_keys:
        raise _fail(where, f"unknown keys {sorted(unknown_keys)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise _fail(where, f"name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    items = raw.get("structures")
    if not isinstance(items, list) or not items:
        raise _fail(where, "structures must be a non-empty list")
    structures = [_structure(item, i, where) for i, item in enumerate(items)]
    seen_ids: dict[int, str] = {}
    seen_names: set[str] = set()
    for s in structures:
        if s.id in seen_ids:
            raise _fail(where, f"id {s.id} is used by both {seen_ids[s.id]} and {s.name}")
        seen_ids[s.id] = s.name
        if s.name in seen_names:
            raise _fail(where, f"structure {s.name!r} is named twice")
        seen_names.add(s.name)
    for s in structures:
        for alias in s.aliases:
            if alias in seen_names and alias != s.name:
                raise _fail(where, f"alias {alias!r} of {s.name} is another structure's name")
    all_aliases = [a for s in structures for a in s.aliases]
    if len(all_aliases) != len(set(all_aliases)):
        raise _fail(where, "an alias is given to two structures")
    laterality = _pairs(raw.get("laterality"), "laterality", seen_names, where)
    apart = _pairs(raw.get("must_not_touch"), "must_not_touch", seen_names, where)
    return LabelSchema(name, tuple(sorted(structures, key=lambda s: s.id)), laterality, apart)


def load_schema(name_or_path: str) -> LabelSchema:
    """A built-in schema by name, or a schema file (read at most :data:`MAX_SCHEMA_FILE_BYTES`)."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise InvalidInput(
            f"label schema {name_or_path!r} is neither a built-in schema ({', '.join(BUILTIN)}) nor a file"
        )
    with path.open("rb") as f:
        data = f.read(MAX_SCHEMA_FILE_BYTES + 1)
    if len(data) > MAX_SCHEMA_FILE_BYTES:
        raise _fail(str(path), f"a schema file is at most {MAX_SCHEMA_FILE_BYTES} bytes")
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"not JSON: {exc}") from exc
    return schema_from_dict(raw, str(path))


def configured_schema(environ: Mapping[str, str] | None = None) -> LabelSchema:
    """The schema this process was configured with (``ATLASLOOP_LABEL_SCHEMA``; default 1.0)."""
    env = os.environ if environ is None else environ
    return load_schema(env.get(SCHEMA_ENV, "").strip() or DEFAULT_SCHEMA)


# --- Built-in schemas -------------------------------------------------------------------------------


def _builtin(
    name: str,
    rows: Sequence[tuple[int, str, tuple[int, int, int], tuple[float, float] | None, str]],
    laterality: Sequence[tuple[str, str]],
    apart: Sequence[tuple[str, str]],
    aliases: Mapping[str, Sequence[str]],
) -> LabelSchema:
    structures = tuple(
        Structure(sid, n, color, volume, "o" in marks, "v" in marks, tuple(aliases.get(n, ())))
        for sid, n, color, volume, marks in rows
    )
    return LabelSchema(name, structures, tuple(laterality), tuple(apart))


# AbdomenAtlas 1.0: the released dataset's ids. Volumes: plausible adult volumes in mL, about the
# 1st and 99th percentiles of abdominal CT studies. Colours: 3D Slicer-like hues.
_ATLAS_1_0 = (
    (1, "aorta", (224, 97, 76), (15.0, 300.0), "v"),
    (2, "gall_bladder", (139, 150, 98), (3.0, 150.0), "o"),
    (3, "kidney_left", (185, 102, 83), (60.0, 350.0), ""),
    (4, "kidney_right", (212, 126, 151), (60.0, 350.0), ""),
    (5, "liver", (221, 130, 101), (700.0, 3000.0), ""),
    (6, "pancreas", (249, 180, 111), (20.0, 180.0), ""),
    (7, "postcava", (0, 151, 206), (10.0, 300.0), "v"),
    (8, "spleen", (157, 108, 162), (40.0, 700.0), ""),
    (9, "stomach", (216, 191, 216), (40.0, 1500.0), ""),
)
# AbdomenAtlas 1.1 keeps 1.0's nine ids and adds sixteen. Structures often outside an abdominal
# field of view, or absent by sex, are optional and carry no volume range.
_ATLAS_1_1 = (
    *_ATLAS_1_0,
    (10, "adrenal_gland_left", (244, 214, 49), None, ""),
    (11, "adrenal_gland_right", (236, 196, 34), None, ""),
    (12, "bladder", (222, 154, 132), None, "o"),
    (13, "celiac_trunk", (255, 64, 64), None, "v"),
    (14, "colon", (204, 168, 143), None, ""),
    (15, "duodenum", (255, 253, 229), None, ""),
    (16, "esophagus", (211, 171, 143), None, "o"),
    (17, "femur_left", (241, 214, 145), None, "o"),
    (18, "femur_right", (230, 200, 130), None, "o"),
    (19, "hepatic_vessel", (0, 112, 165), None, "v"),
    (20, "intestine", (255, 200, 170), None, ""),
    (21, "lung_left", (197, 165, 145), None, "o"),
    (22, "lung_right", (172, 138, 115), None, "o"),
    (23, "portal_vein_and_splenic_vein", (0, 145, 130), None, "v"),
    (24, "prostate", (230, 158, 140), None, "o"),
    (25, "rectum", (200, 150, 120), None, "o"),
)
# (left, right): in RAS the patient's left has the smaller x.
_LATERAL_1_0 = (("kidney_left", "kidney_right"), ("spleen", "liver"))
_APART_1_0 = (
    ("kidney_left", "kidney_right"),
    ("spleen", "kidney_right"),
    ("liver", "kidney_left"),
    ("gall_bladder", "spleen"),
    ("liver", "spleen"),
)
_ALIASES = {
    "gall_bladder": ("gallbladder",),
    "postcava": ("inferior_vena_cava", "ivc"),
    "kidney_left": ("kidney_l", "left_kidney"),
    "kidney_right": ("kidney_r", "right_kidney"),
    "adrenal_gland_left": ("left_adrenal_gland",),
    "adrenal_gland_right": ("right_adrenal_gland",),
    "bladder": ("urinary_bladder",),
    "intestine": ("small_bowel",),
    "femur_left": ("left_femur",),
    "femur_right": ("right_femur",),
    "lung_left": ("left_lung",),
    "lung_right": ("right_lung",),
}

BUILTIN: dict[str, LabelSchema] = {
    "abdomenatlas-1.0": _builtin("abdomenatlas-1.0", _ATLAS_1_0, _LATERAL_1_0, _APART_1_0, _ALIASES),
    "abdomenatlas-1.1": _builtin(
        "abdomenatlas-1.1",
        _ATLAS_1_1,
        (
            *_LATERAL_1_0,
            ("adrenal_gland_left", "adrenal_gland_right"),
            ("femur_left", "femur_right"),
            ("lung_left", "lung_right"),
        ),
        (*_APART_1_0, ("femur_left", "femur_right")),
        _ALIASES,
    ),
}
