"""What the page shows and writes, on a case's grid viewed in RAS (``atlasloop.imaging.display``).

The browser paints on pictures of slices; a picture's pixel (row r, column c) of slice ``index``
is the RAS voxel (X, Y, Z = the RAS shape):

| plane | i | j | k |
|---|---|---|---|
| axial | X-1-c | Y-1-r | index |
| coronal | X-1-c | index | Z-1-r |
| sagittal | index | Y-1-c | Z-1-r |

(radiological convention, as the rendering service draws them). The page sends a revision as RAS
voxel indices ``(i*Y + j)*Z + k`` with the label each ends with; :func:`apply_edits` writes them
into the label version the lease started from and turns the result back to the stored orientation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from atlasloop.common.errors import InvalidInput
from atlasloop.common.keyed_locks import KeyedLocks
from atlasloop.imaging.display import PLANE_AXIS, RasVolume, slice_geometry, take, to_ras
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.volume import Volume


@dataclass(frozen=True)
class LabelVolume:
    """A label version as stored, and viewed in RAS."""

    stored: Volume
    ras: RasVolume

    @classmethod
    def of(cls, volume: Volume) -> LabelVolume:
        return cls(volume, to_ras(volume.array, volume.affine))

    @property
    def nbytes(self) -> int:
        return int(self.stored.array.nbytes)

    def picture(self, plane: str, index: int) -> np.ndarray:
        """The label slice as the page draws it (rows, columns), uint8."""
        if plane not in PLANE_AXIS:
            raise InvalidInput(f"plane must be one of {', '.join(PLANE_AXIS)}")
        geometry = slice_geometry(self.ras.array.shape, self.ras.spacing, plane, index)
        return np.ascontiguousarray(take(self.ras.array, geometry), dtype=np.uint8)

    def grid(self) -> dict:
        """Shape, spacing and world affine of the RAS view: what the page needs to map pixels."""
        return {
            "shape": [int(n) for n in self.ras.array.shape],
            "spacing_mm": [float(s) for s in self.ras.spacing],
        }

    def ras_box(self, min_mm: Sequence[float], max_mm: Sequence[float]) -> tuple[list[int], list[int]]:
        """A world box (mm, RAS) as inclusive RAS voxel bounds, clipped to the grid."""
        corners = np.array(
            [[x, y, z] for x in (min_mm[0], max_mm[0]) for y in (min_mm[1], max_mm[1]) for z in (min_mm[2], max_mm[2])],
            dtype=np.float64,
        )
        inverse = np.linalg.inv(self.ras.affine)
        ijk = corners @ inverse[:3, :3].T + inverse[:3, 3]
        shape = np.array(self.ras.array.shape) - 1
        lo = np.clip(np.floor(ijk.min(axis=0) + 1e-6), 0, shape).astype(int)
        hi = np.clip(np.ceil(ijk.max(axis=0) - 1e-6), 0, shape).astype(int)
        return lo.tolist(), hi.tolist()


def grid_of(shape: Sequence[int], affine: np.ndarray) -> dict:
    """What :meth:`LabelVolume.grid` says of a volume of ``shape`` and ``affine``, from the case's
    geometry alone (no voxel read): the page can ask for its first pictures before any volume loads.
    The RAS view is computed on a zero-stride stand-in, so it costs no memory."""
    stand_in = np.broadcast_to(np.zeros((), np.uint8), tuple(int(n) for n in shape))
    ras = to_ras(stand_in, np.asarray(affine, dtype=np.float64))
    return {"shape": [int(n) for n in ras.array.shape], "spacing_mm": [float(s) for s in ras.spacing]}


def apply_edits(base: LabelVolume, voxels: Sequence[int], labels: Sequence[int], max_voxels: int) -> Volume:
    """``base`` with RAS voxel ``voxels[n]`` set to ``labels[n]``, in the stored orientation.
    Refused whole (nothing written anywhere) when any index or label is out of range."""
    if len(voxels) != len(labels):
        raise InvalidInput("voxels and labels must have the same length")
    if len(voxels) > max_voxels:
        raise InvalidInput(f"a revision may change at most {max_voxels} voxels, got {len(voxels)}")
    ras = np.array(base.ras.array, copy=True, order="C")  # C order: reshape(-1) below must be a view
    index = np.asarray(voxels, dtype=np.int64)
    values = np.asarray(labels, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= ras.size):
        raise InvalidInput(f"voxel indices must lie in 0..{ras.size - 1}")
    allowed = np.array([0, *ORGANS])
    if values.size and not np.isin(values, allowed).all():
        raise InvalidInput(f"labels must be 0 (background) or one of {sorted(ORGANS)}")
    ras.reshape(-1)[index] = values.astype(ras.dtype)
    back = ornt_transform(axcodes2ornt("RAS"), io_orientation(base.stored.affine))
    return Volume(
        np.ascontiguousarray(apply_orientation(ras, back)).astype(base.stored.array.dtype), base.stored.affine
    )


def changed_organs(before: np.ndarray, after: np.ndarray) -> list[str]:
    """Organs whose voxels differ, in schema order."""
    return [organ for label, organ in ORGANS.items() if not np.array_equal(before == label, after == label)]


class VolumeCache:
    """Label versions by (case, version), least recently used out first, bounded in bytes. Label
    versions never change once written, so a cached one is never stale."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self._items: OrderedDict[tuple[str, str], LabelVolume] = OrderedDict()
        self._nbytes = 0  # the items' total, kept as they come and go
        self._lock = threading.Lock()
        self._loading = KeyedLocks()

    def get(self, key: tuple[str, str], load: Callable[[], Volume]) -> LabelVolume:
        """The cached version, or ``load``'s, loaded once however many ask for it at the same time."""
        with self._loading.hold(key):
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            value = LabelVolume.of(load())
            with self._lock:
                self._items[key] = value
                self._nbytes += value.nbytes
                while self._nbytes > self.capacity and len(self._items) > 1:
                    self._nbytes -= self._items.popitem(last=False)[1].nbytes
            return value
