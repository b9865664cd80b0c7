"""Immutable label versions: written once under a fresh id, listed with their provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlasloop.common import ids, layout
from atlasloop.common.domain import LabelSource
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging import display_copy
from atlasloop.imaging.labels import census
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.storage.case_meta import LabelRecord, now_iso
from atlasloop.storage.writes import WriteGroup

SOURCES = tuple(LabelSource)


class LabelVersions:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write(
        self,
        group: WriteGroup,
        case_id: str,
        labels: Volume,
        source: str,
        parent: str,
        model_set: str,
        round_: int,
        author: str,
        work: Path,
        version: str = "",
    ) -> LabelRecord:
        """Store ``labels`` (already validated against the case) as a new version (``version``:
        the one a receipt already promised, when a write cut short is finished); json last."""
        if source not in SOURCES:
            raise InvalidInput(f"label source must be one of {', '.join(SOURCES)}")
        if round_ < 0:
            raise InvalidInput("round must be >= 0")
        version = version or ids.new_version()
        as_stored = labels.with_array(labels.array.astype(np.uint8, copy=False))
        path = save_nifti(as_stored, work / f"{version}.nii.gz")
        stored = group.put_file(layout.label_key(case_id, version), path)
        # what viewers read first (rendering, the page): in slabs, as it is read whole
        group.put_bytes(layout.display_label_key(case_id, version), display_copy.encode(as_stored, bricks=False))
        counts = {name: voxels for name, (voxels, _) in census(labels.array, labels.voxel_volume_ml).items()}
        record = LabelRecord(
            case_id,
            version,
            source,
            parent,
            model_set,
            round_,
            stored.key,
            stored.sha256,
            stored.size_bytes,
            author,
            now_iso(),
            counts,
        )
        group.put_json(layout.label_meta_key(case_id, version), record.as_json())
        return record

    def get(self, case_id: str, version: str) -> LabelRecord:
        ids.validate_version(version)
        try:
            return LabelRecord.from_json(self._store.get_json(layout.label_meta_key(case_id, version)))
        except NotFound:
            raise NotFound(f"case {case_id!r} has no label version {version!r}") from None

    def made_by(self, case_id: str, model_set: str) -> LabelRecord | None:
        """The AI version a model set already wrote for the case (there is at most one)."""
        made = [r for r in self.list(case_id) if r.source == LabelSource.AI and r.model_set == model_set]
        return made[0] if made else None

    def list(self, case_id: str) -> list[LabelRecord]:
        prefix = layout.labels_prefix(case_id)
        records = [
            LabelRecord.from_json(self._store.get_json(key))
            for key in self._store.list_keys(prefix)
            if key.endswith(".json")
        ]
        return sorted(records, key=lambda r: r.version)
