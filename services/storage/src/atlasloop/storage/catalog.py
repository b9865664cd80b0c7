"""Reading cases: one case's record, pages of cases, the object behind a volume reference."""

from __future__ import annotations

from dataclasses import dataclass

from atlasloop.common import ids, layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.storage.case_meta import CaseRecord
from atlasloop.storage.label_versions import LabelVersions

MAX_PAGE = 100


@dataclass(frozen=True)
class VolumeObject:
    key: str
    sha256: str
    size_bytes: int


class Catalog:
    def __init__(self, store: ObjectStore, labels: LabelVersions) -> None:
        self._store = store
        self._labels = labels

    def get(self, case_id: str) -> CaseRecord:
        ids.validate_case_id(case_id)
        try:
            return CaseRecord.from_json(self._store.get_json(layout.meta_key(case_id)))
        except NotFound:
            raise NotFound(f"case {case_id!r} does not exist") from None

    def page(self, page_size: int, token: str) -> tuple[list[CaseRecord], str]:
        """Cases in id order after ``token``; the next token is empty on the last page."""
        size = min(page_size or 50, MAX_PAGE)
        if size < 0:
            raise InvalidInput("page_size must be >= 0")
        start = layout.case_prefix(ids.validate_case_id(token)) if token else None
        records: list[CaseRecord] = []
        last = ""
        for prefix in self._store.list_prefixes(layout.CASES, start_after=start):
            case_id = layout.case_id_of(prefix)
            last = case_id
            try:
                records.append(self.get(case_id))
            except NotFound:
                continue  # an import in flight: not a case until meta.json exists
            if len(records) == size:
                break
        more = len(records) == size and any(
            True for _ in self._store.list_prefixes(layout.CASES, layout.case_prefix(last))
        )
        return records, (last if more else "")

    def volume(self, case_id: str, kind: str, version: str) -> VolumeObject:
        record = self.get(case_id)
        if kind == "ct":
            return VolumeObject(record.ct_key, record.ct_sha256, record.ct_size_bytes)
        if kind == "label":
            if not version:
                raise InvalidInput("a label download needs label_version")
            label = self._labels.get(case_id, version)
            return VolumeObject(label.key, label.sha256, label.size_bytes)
        raise InvalidInput("kind must be VOLUME_KIND_CT or VOLUME_KIND_LABEL")
