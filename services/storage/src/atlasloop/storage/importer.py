"""Case import: a staged NIfTI, DICOM zip or AbdomenAtlas case zip becomes a canonical case.

Order of writes: original label version (if any), CT, then ``meta.json`` (which makes the case
exist), then the content index; ``case.ingested`` is published only after all are durable. If the
event cannot be published, everything written is removed again and the caller gets UNAVAILABLE, so
a failed import leaves neither objects nor an event behind. (If the broker stored the event but its
acknowledgement was lost, consumers see an event for a case that does not exist and must treat
NOT_FOUND as "skip"; they are idempotent anyway.)

A process killed in the middle cannot remove anything, so before the first object the upload's
receipt (``layout.upload_receipt_key``) records the case id and original label version the import
will write. The same import retried (same upload) then finishes the case under those names, or,
when the case was complete, announces it again and returns it: never a second case, never a case
no event announced, never "exists already" for the caller's own import.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlasloop.common import ids, layout, observe, tracing
from atlasloop.common.auth import Principal
from atlasloop.common.domain import CaseFormat
from atlasloop.common.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging import display_copy
from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.io import safe_extract
from atlasloop.imaging.labels import validate_label_map
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage import provenance
from atlasloop.storage.case_meta import CaseRecord, Geometry, content_sha256, now_iso
from atlasloop.storage.label_versions import LabelVersions
from atlasloop.storage.staging import Staging
from atlasloop.storage.writes import WriteGroup

log = logging.getLogger(__name__)

FORMATS = tuple(CaseFormat)
HU_PLAUSIBLE = (-4096.0, 40000.0)


@dataclass(frozen=True)
class ImportRequest:
    upload_id: str
    format: str  # one of FORMATS, or "" to recognise from the file name
    case_id: str
    label_upload_id: str
    allow_duplicate: bool
    source: str


@dataclass(frozen=True)
class ImportResult:
    case: CaseRecord
    duplicate: bool


def canonical_ct(volume: Volume, source: str) -> Volume:
    """HU as int16 when the values are whole and fit, else float32; refuses non-HU data."""
    low, high = float(volume.array.min()), float(volume.array.max())
    if low < HU_PLAUSIBLE[0] or high > HU_PLAUSIBLE[1]:
        raise ImageError(source, f"values {low:g}..{high:g} are not Hounsfield units")
    if low == high:
        raise ImageError(source, f"every voxel is {low:g}: not a CT")
    array = volume.array
    if (array.dtype.kind in "iu" or np.all(array == np.round(array))) and low >= -32768 and high <= 32767:
        return volume.with_array(array.astype(np.int16, copy=False))
    return volume.with_array(array.astype(np.float32, copy=False))


def recognise(file_name: str) -> str:
    name = file_name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".zip"):
        return "dicom_zip"
    raise InvalidInput(f"cannot tell the format of {file_name!r}; give it explicitly")


class CaseImporter:
    def __init__(
        self,
        store: ObjectStore,
        staging: Staging,
        labels: LabelVersions,
        producer: EventProducer,
        max_bytes: int,
        keep_patient_identifiers: bool = False,
        deidentify_key: bytes | None = None,
    ) -> None:
        self._store = store
        self._staging = staging
        self._labels = labels
        self._producer = producer
        self._max_bytes = max_bytes
        self._keep_patient = keep_patient_identifiers
        self._deidentify_key = deidentify_key  # None: keep the UIDs as they are

    def _read(self, path: Path, fmt: str, work: Path) -> tuple[Volume, Volume | None, dict | None]:
        """The CT, its labels if the file holds any, and the DICOM identity of a DICOM import: its
        patient part dropped unless the deployment keeps it, all of it de-identified if it asks."""
        if fmt == "nifti":
            return load_nifti(path), None, None
        if fmt == "dicom_zip":
            ct, identity = read_series(path)
            if self._deidentify_key is not None:
                identity = identity.deidentified(self._deidentify_key)
            return ct, None, identity.as_json(keep_patient=self._keep_patient)
        folder = safe_extract(path, work / "case", self._max_bytes * 4)
        candidates = [p.parent for p in folder.rglob("ct.nii.gz")]
        if len(candidates) != 1:
            raise ImageError(path.name, f"an AbdomenAtlas case zip holds one ct.nii.gz; found {len(candidates)}")
        case = read_case(candidates[0])
        return case.ct, case.labels, None

    def import_case(self, request: ImportRequest, principal: Principal) -> ImportResult:
        with observe.step("import", "import case") as span:
            try:
                result = self._import(request, principal)
            except ImageError as exc:  # name the file by its base name: no server paths in answers
                raise ImageError(Path(exc.source).name, exc.problem) from None
            span.set_attribute("case_id", result.case.case_id)
            return result

    def _import(self, request: ImportRequest, principal: Principal) -> ImportResult:
        author = principal.name
        ids.validate_upload_id(request.upload_id)
        receipt = self._staging.receipt(request.upload_id, author)
        if receipt is not None:
            if receipt.get("kind") != "import" or (request.case_id and receipt.get("case_id") != request.case_id):
                raise Conflict(f"upload {request.upload_id} was already used for another import")
            finished = self._finished(receipt)
            if finished is not None:
                self._discard(request)
                return ImportResult(finished, duplicate=False)
        elif request.case_id:
            ids.validate_case_id(request.case_id)
            if self._store.exists(layout.meta_key(request.case_id)):
                raise AlreadyExists(f"case {request.case_id!r} exists already")
        if request.label_upload_id:
            ids.validate_upload_id(request.label_upload_id)
        with tempfile.TemporaryDirectory(prefix="atlasloop-case-") as tmp:
            work = Path(tmp)
            with self._staging.fetched(request.upload_id) as path:
                fmt = request.format or recognise(path.name)
                if fmt not in FORMATS:
                    raise InvalidInput(f"unknown format {fmt!r}")
                ct, labels, dicom = self._read(path, fmt, work)
            ct = canonical_ct(ct, path.name)
            if request.label_upload_id:
                with self._staging.fetched(request.label_upload_id) as label_path:
                    labels = load_nifti(label_path, labels=True)
            if labels is not None:
                if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
                    raise ImageError("labels", f"label grid {labels.shape} does not match the CT's {ct.shape}")
                labels = labels.with_array(validate_label_map(labels.array, "labels"))
            if labels is not None:  # they become the case's original labels: ground truth
                provenance.check_original_import(principal)
            digest = content_sha256(ct)
            existing = self._existing(digest)
            if existing is not None and not request.allow_duplicate:
                log.info("duplicate import", extra={"case_id": existing.case_id})
                self._discard(request)
                return ImportResult(existing, duplicate=True)
            if receipt is None:
                receipt = {
                    "kind": "import",
                    "case_id": request.case_id or ids.new_case_id(),
                    "original_version": ids.new_version() if labels is not None else "",
                    "author": author,
                }
                new_receipt = True
            else:
                new_receipt = False
            record = self._write(receipt, new_receipt, ct, labels, dicom, digest, request, author, work)
        self._discard(request)
        return ImportResult(record, duplicate=False)

    def _finished(self, receipt: dict) -> CaseRecord | None:
        """The case an earlier try of this import completed, announced again (that try may have
        died before its event was published; consumers are idempotent), or None."""
        try:
            record = CaseRecord.from_json(self._store.get_json(layout.meta_key(str(receipt["case_id"]))))
        except NotFound:
            return None
        self.announce(record)
        log.info("import retried: the case exists; announced again", extra={"case_id": record.case_id})
        return record

    def announce(self, record: CaseRecord) -> None:
        """``case.ingested`` for a stored case, published (again): every consumer is idempotent."""
        self._producer.publish(self._ingested(record), key=record.case_id)

    def _ingested(self, record: CaseRecord) -> events_pb2.CaseIngested:
        return events_pb2.CaseIngested(
            meta=new_meta("storage"),
            case_id=record.case_id,
            ct=common_pb2.ObjectRef(
                bucket=self._store.bucket, key=record.ct_key, sha256=record.ct_sha256, size_bytes=record.ct_size_bytes
            ),
            geometry=record.geometry.to_proto(),
            original_label_version=record.original_label_version,
        )

    def _existing(self, digest: str) -> CaseRecord | None:
        try:
            case_id = str(self._store.get_json(layout.content_index_key(digest))["case_id"])
            return CaseRecord.from_json(self._store.get_json(layout.meta_key(case_id)))
        except NotFound:
            return None

    def _write(
        self,
        receipt: dict,
        new_receipt: bool,
        ct: Volume,
        labels: Volume | None,
        dicom: dict | None,
        digest: str,
        request: ImportRequest,
        author: str,
        work: Path,
    ) -> CaseRecord:
        case_id = str(receipt["case_id"])
        ct_path = save_nifti(ct, work / "ct.nii.gz")
        with WriteGroup(self._store) as group:
            if new_receipt:
                group.put_json(layout.upload_receipt_key(request.upload_id), receipt)
            original = ""
            if labels is not None:
                original = self._labels.write(
                    group, case_id, labels, "original", "", "", 0, author, work, str(receipt["original_version"])
                ).version
            stored = group.put_file(layout.ct_key(case_id), ct_path)
            # what viewers read first (rendering)
            group.put_bytes(layout.display_ct_key(case_id), display_copy.encode(ct))
            record = CaseRecord(
                case_id=case_id,
                geometry=Geometry.of(ct),
                hu_min=float(ct.array.min()),
                hu_max=float(ct.array.max()),
                source=request.source[:500],
                ct_key=stored.key,
                ct_sha256=stored.sha256,
                ct_size_bytes=stored.size_bytes,
                content_sha256=digest,
                original_label_version=original,
                imported_by=author,
                imported_at=now_iso(),
                trace_context=tracing.current_headers(),
                dicom=dicom,
            )
            group.put_json(layout.meta_key(case_id), record.as_json())
            if not request.allow_duplicate or not self._store.exists(layout.content_index_key(digest)):
                group.put_json(layout.content_index_key(digest), {"case_id": case_id})
            self._producer.publish(self._ingested(record), key=case_id)
        log.info("case imported", extra={"case_id": case_id, "labels": bool(original)})
        return record

    def _discard(self, request: ImportRequest) -> None:
        for upload_id in filter(None, (request.upload_id, request.label_upload_id)):
            self._staging.discard(upload_id)
