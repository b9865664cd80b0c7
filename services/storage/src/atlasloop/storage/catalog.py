"""Reading cases: one case's record, pages of cases, the object behind a volume reference."""

from __future__ import annotations

from dataclasses import dataclass, field

from atlasloop.common import ids, layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.dicom_identity import ACQUISITION_TAGS
from atlasloop.storage.case_meta import CaseRecord
from atlasloop.storage.label_versions import LabelVersions

MAX_PAGE = 100
MAX_SCANNED = 1000  # cases read for one filtered page at most: a page may come back short, never slow


@dataclass(frozen=True)
class CaseFilter:
    """Which cases a listing keeps: by DICOM acquisition values and study or series UID."""

    acquisition: dict[str, str] = field(default_factory=dict)
    study_instance_uid: str = ""
    series_instance_uid: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.acquisition) - set(ACQUISITION_TAGS))
        if unknown:
            raise InvalidInput(f"unknown acquisition fields {unknown}; known: {sorted(ACQUISITION_TAGS)}")

    @property
    def empty(self) -> bool:
        return not (self.acquisition or self.study_instance_uid or self.series_instance_uid)

    def keeps(self, record: CaseRecord) -> bool:
        if self.empty:
            return True
        dicom = record.dicom
        if dicom is None:
            return False
        if self.study_instance_uid and dicom["study_instance_uid"] != self.study_instance_uid:
            return False
        if self.series_instance_uid and dicom["series_instance_uid"] != self.series_instance_uid:
            return False
        kept = dicom.get("acquisition", {})
        return all(kept.get(name, "").casefold() == value.casefold() for name, value in self.acquisition.items())


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

    def page(self, page_size: int, token: str, keep: CaseFilter | None = None) -> tuple[list[CaseRecord], str]:
        """Cases in id order after ``token`` that ``keep`` keeps; the next token is empty on the
        last page. A filtered page stops after reading ``MAX_SCANNED`` cases, short if need be."""
        keep = keep or CaseFilter()
        size = min(page_size or 50, MAX_PAGE)
        if size < 0:
            raise InvalidInput("page_size must be >= 0")
        start = layout.case_prefix(ids.validate_case_id(token)) if token else None
        records: list[CaseRecord] = []
        last = ""
        scanned = 0
        for prefix in self._store.list_prefixes(layout.CASES, start_after=start):
            case_id = layout.case_id_of(prefix)
            last = case_id
            try:
                record = self.get(case_id)
            except NotFound:
                continue  # an import in flight: not a case until meta.json exists
            scanned += 1
            if keep.keeps(record):
                records.append(record)
            if len(records) == size or scanned >= MAX_SCANNED:
                break
        stopped_early = len(records) == size or scanned >= MAX_SCANNED
        more = stopped_early and any(True for _ in self._store.list_prefixes(layout.CASES, layout.case_prefix(last)))
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
