"""Compact ensemble outputs: what inference writes and scoring reads.

Never the dense models x organs x voxels float tensor. Per member and organ, the soft prediction
(already zeroed outside the member's dilated largest component, as the reference stores it) and
its entropy map are quantised to uint8 (x255, truncating) and cropped to the bounding box of their
non-zero voxels; the ensemble's pseudo-label is one boolean mask per organ, cropped the same way.
All live on one grid (the model grid, or the native grid for the offline reference layout),
described by its shape and affine.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def quantise(probability: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 the way the reference stores them: x255, then truncation."""
    return np.asarray(np.clip(probability, 0.0, 1.0) * 255).astype(np.uint8)


def entropy_term(probability: np.ndarray) -> np.ndarray:
    """The elementwise entropy term -p ln p (torch.special.entr), 0 at p = 0."""
    p = np.asarray(probability, dtype=np.float64)
    out = np.zeros_like(p)
    positive = p > 0
    out[positive] = -p[positive] * np.log(p[positive])
    return out


def nonzero_box(array: np.ndarray) -> Box | None:
    """Bounding box (start, stop per axis) of the non-zero voxels, or None when all are zero.

    Two reductions that stream the array once each (max over the leading axis, and over each
    row), instead of np.nonzero, which would materialise index arrays.
    """
    if array.dtype == bool:
        array = array.view(np.uint8)
    plane = array.max(axis=0)  # (y, z)
    if not plane.any():
        return None
    rows = array.reshape(array.shape[0], -1).max(axis=1)
    ys, zs = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    xs = np.flatnonzero(rows)
    return (int(xs[0]), int(xs[-1]) + 1), (int(ys[0]), int(ys[-1]) + 1), (int(zs[0]), int(zs[-1]) + 1)


def union_box(boxes: list[Box | None]) -> Box | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple((min(b[a][0] for b in present), max(b[a][1] for b in present)) for a in range(3))  # type: ignore[return-value]


def grow(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    return tuple((max(lo - margin, 0), min(hi + margin, n)) for (lo, hi), n in zip(box, shape, strict=True))  # type: ignore[return-value]


def slices(box: Box) -> tuple[slice, slice, slice]:
    return tuple(slice(lo, hi) for lo, hi in box)  # type: ignore[return-value]


@dataclass
class Cropped:
    """A uint8 (or bool) map stored as its non-zero bounding box on a known grid."""

    box: Box | None
    data: np.ndarray

    @classmethod
    def of(cls, full: np.ndarray) -> Cropped:
        box = nonzero_box(full)
        if box is None:
            return cls(None, np.zeros((0, 0, 0), full.dtype))
        return cls(box, np.ascontiguousarray(full[slices(box)]))

    def read(self, box: Box) -> np.ndarray:
        """The map inside ``box`` (zeros where the stored crop does not reach)."""
        out = np.zeros(tuple(hi - lo for lo, hi in box), self.data.dtype)
        if self.box is None:
            return out
        inter = [(max(a[0], b[0]), min(a[1], b[1])) for a, b in zip(box, self.box, strict=True)]
        if any(lo >= hi for lo, hi in inter):
            return out
        dst = tuple(slice(lo - b[0], hi - b[0]) for (lo, hi), b in zip(inter, box, strict=True))
        src = tuple(slice(lo - s[0], hi - s[0]) for (lo, hi), s in zip(inter, self.box, strict=True))
        out[dst] = self.data[src]
        return out

    def moved(self, offset: tuple[int, ...]) -> Cropped:
        """The same crop on a larger grid where this one's origin lies at ``offset``."""
        if self.box is None:
            return self
        return Cropped(
            tuple((lo + o, hi + o) for (lo, hi), o in zip(self.box, offset, strict=True)),  # type: ignore[arg-type]
            self.data,
        )

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        return self.read(((0, shape[0]), (0, shape[1]), (0, shape[2])))


@dataclass
class EnsembleOutput:
    """Everything scoring needs about one prediction of one case."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    members: list[str]
    soft: dict[str, dict[str, Cropped]] = field(default_factory=dict)  # member -> organ -> uint8
    entropy: dict[str, dict[str, Cropped]] = field(default_factory=dict)  # member -> organ -> uint8
    pseudo: dict[str, Cropped] = field(default_factory=dict)  # structure -> bool (targets and others)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "shape": np.asarray(self.shape),
            "affine": self.affine,
            "members": np.asarray(self.members),
        }
        for kind, table in (("soft", self.soft), ("entropy", self.entropy)):
            for member, organs in table.items():
                for organ, crop in organs.items():
                    _put(arrays, f"{kind}/{member}/{organ}", crop)
        for organ, crop in self.pseudo.items():
            _put(arrays, f"pseudo/{organ}", crop)
        return _npz(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> EnsembleOutput:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            out = cls(
                _shape(archive["shape"]),
                archive["affine"],
                [str(m) for m in archive["members"]],
            )
            for name in archive.files:
                if not name.endswith("/data"):
                    continue
                stem = name.removesuffix("/data")
                crop = Cropped(_box(archive[f"{stem}/box"]), archive[name])
                parts = stem.split("/")
                if parts[0] == "pseudo":
                    out.pseudo[parts[1]] = crop
                else:
                    getattr(out, parts[0]).setdefault(parts[1], {})[parts[2]] = crop
        return out


COMPRESS_LEVEL = 1


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (``np.load`` reads it) deflated at level 1, not ``np.savez_compressed``'s
    6: measured on the serving benchmark's outputs (97 MB of quantised maps from untrained members,
    the incompressible worst case), 2.9 s instead of 6.1 s for 3% more bytes; the maps of trained
    members are mostly zeros and small either way. This runs once per prediction, on the path a
    case waits on."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _put(arrays: dict[str, np.ndarray], stem: str, crop: Cropped) -> None:
    arrays[f"{stem}/box"] = np.asarray(crop.box if crop.box is not None else np.zeros((0, 2)), dtype=np.int64)
    arrays[f"{stem}/data"] = crop.data


@dataclass
class AttentionMaps:
    """One scoring mode's stored attention of a case (uint8 heat per organ, cropped), on the grid of
    the prediction it was computed from: what scoring writes and rendering reads."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    organs: dict[str, Cropped] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"shape": np.asarray(self.shape), "affine": self.affine}
        for organ, crop in self.organs.items():
            _put(arrays, organ, crop)
        return _npz(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> AttentionMaps:
        """Every organ inflated at once (``LazyOrgans`` reads the archive, one organ when asked)."""
        organs = LazyOrgans(data)
        return cls(organs.shape, organs.affine, dict(organs))


class LazyOrgans(Mapping[str, Cropped]):
    """A stored attention archive's organs, each inflated the first time it is asked for.

    A viewer's first picture needs one organ's heat; inflating all of them first was a fifth of the
    renderer's cold load in ``make bench`` (untrained members' maps, the incompressible worst case).
    ``nbytes`` is known before any organ is read (the archive's bytes and every member's inflated
    size), so a byte-bounded cache can account for it once. Safe to read from several threads.
    """

    def __init__(self, data: bytes) -> None:
        self._archive = np.load(io.BytesIO(data), allow_pickle=False)  # members are read on access
        self._names = [n.removesuffix("/data") for n in self._archive.files if n.endswith("/data")]
        self._inflated: dict[str, Cropped] = {}
        self._lock = threading.Lock()
        self.shape = _shape(self._archive["shape"])
        self.affine = np.asarray(self._archive["affine"])
        self.nbytes = len(data) + sum(info.file_size for info in self._archive.zip.infolist())

    def __getitem__(self, organ: str) -> Cropped:
        with self._lock:  # one inflation at a time: the archive's file handle is shared
            if organ not in self._inflated:
                if organ not in self._names:
                    raise KeyError(organ)
                box, data = self._archive[f"{organ}/box"], self._archive[f"{organ}/data"]
                self._inflated[organ] = Cropped(_box(box), data)
            return self._inflated[organ]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _shape(array: np.ndarray) -> tuple[int, int, int]:
    x, y, z = (int(v) for v in array)
    return x, y, z


def _box(array: np.ndarray) -> Box | None:
    return None if array.size == 0 else tuple(tuple(int(v) for v in row) for row in array)  # type: ignore[return-value]
