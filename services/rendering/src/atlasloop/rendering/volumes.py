"""Where the pictures' data comes from: CT, label versions and attention, read from the object
store once and kept in a byte-bounded LRU cache (RAS views of the stored arrays; a display copy's
bricks are read as pictures need them, ``bricks``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from atlasloop.common import layout
from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging import display_copy
from atlasloop.imaging.compact import Cropped, LazyOrgans
from atlasloop.imaging.display import RasVolume, to_ras
from atlasloop.imaging.stream import load_nifti_chunks
from atlasloop.rendering import bricks
from atlasloop.rendering.bricks import BrickedVolume, CompleteVolume
from atlasloop.rendering.cache import ByteLRU

PlaneVolume = BrickedVolume | CompleteVolume


@dataclass
class AttentionSet:
    """One scored prediction's attention maps: per organ, uint8 on the attention grid, cropped,
    each inflated when first drawn (``LazyOrgans``)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    organs: Mapping[str, Cropped]
    regions: list[dict]
    nbytes: int


def _size(value) -> int:
    return value.nbytes


class VolumeSource:
    """CTs and label versions as ``PlaneVolume`` objects (a display copy read brick by brick, or a
    volume read whole), cached by their bytes; ``ct`` and ``labels`` hand back whole volumes."""

    def __init__(self, store: ObjectStore, cache_bytes: int, mode: str) -> None:
        self._store = store
        self._mode = mode
        self.cache: ByteLRU = ByteLRU(cache_bytes, _size)

    def _nifti(self, key: str, what: str) -> RasVolume:
        """Stream the object and inflate it as it arrives: no temporary file, no second copy."""
        try:
            volume = load_nifti_chunks(self._store.iter_chunks(key, 4 * 1024 * 1024), key)
        except NotFound:
            raise NotFound(f"{what} does not exist") from None
        return to_ras(volume.array, volume.affine)

    def _open(self, display_key: str, nifti_key: str, what: str) -> PlaneVolume:
        """The display-ready copy when storage wrote one: read brick by brick (version 3) or whole
        (copies written before bricks); else the NIfTI (cases stored before copies existed)."""

        def fetch(offset: int, length: int) -> bytes:
            return self._store.get_range(display_key, offset, length)

        try:
            layout, start = bricks.read_layout(fetch, display_key)
        except NotFound:
            return CompleteVolume(self._nifti(nifti_key, what))
        if layout.version >= 3:
            return BrickedVolume(layout, fetch, display_key)
        # read whole: a small copy (a label version's) came whole with the first GET
        whole = len(start) < bricks.HEAD_BYTES
        chunks = [start] if whole else self._store.iter_chunks(display_key, 4 * 1024 * 1024)
        volume = display_copy.decode_stream(chunks, display_key)
        return CompleteVolume(to_ras(volume.array, volume.affine))

    def ct_planes(self, case_id: str) -> PlaneVolume:
        return self.cache.get(
            ("ct", case_id),
            lambda: self._open(layout.display_ct_key(case_id), layout.ct_key(case_id), f"case {case_id!r}"),
        )

    def label_planes(self, case_id: str, version: str) -> PlaneVolume:
        return self.cache.get(
            ("labels", case_id, version),
            lambda: self._open(
                layout.display_label_key(case_id, version),
                layout.label_key(case_id, version),
                f"label version {version!r} of case {case_id!r}",
            ),
        )

    def ct(self, case_id: str) -> RasVolume:
        return self.ct_planes(case_id).ensure_all()

    def labels(self, case_id: str, version: str) -> RasVolume:
        return self.label_planes(case_id, version).ensure_all()

    def latest_model_set(self, case_id: str) -> str:
        prefix = layout.attention_sets_prefix(case_id)
        sets = layout.sub_names(prefix, list(self._store.list_prefixes(prefix)))
        if not sets:
            raise NotFound(f"case {case_id!r} has no attention maps yet")
        return sets[-1]

    def attention(self, case_id: str, model_set: str = "") -> AttentionSet:
        model_set = model_set or self.latest_model_set(case_id)
        return self.cache.get(
            ("attention", case_id, model_set, self._mode), lambda: self._load_attention(case_id, model_set)
        )

    def _load_attention(self, case_id: str, model_set: str) -> AttentionSet:
        try:
            data = self._store.get_bytes(layout.attention_key(case_id, model_set, self._mode))
            scores = json.loads(self._store.get_bytes(layout.scores_key(case_id, model_set, self._mode)))
        except NotFound:
            raise NotFound(f"case {case_id!r} has no {self._mode} attention for model set {model_set!r}") from None
        organs = LazyOrgans(data)
        return AttentionSet(organs.shape, organs.affine, organs, scores.get("regions", []), organs.nbytes + 4096)
