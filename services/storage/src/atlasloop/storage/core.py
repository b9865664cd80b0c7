"""The storage service's operations in plain Python: what the servicer calls, what tests call."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from atlasloop.common import ids, layout
from atlasloop.common.auth import Principal
from atlasloop.common.domain import LabelSource
from atlasloop.common.errors import Conflict, InvalidInput, NotFound
from atlasloop.common.events import EventProducer
from atlasloop.common.keyed_locks import KeyedLocks
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import validate_label_map
from atlasloop.imaging.volume import load_nifti
from atlasloop.storage import provenance
from atlasloop.storage.case_meta import CaseRecord, LabelRecord
from atlasloop.storage.catalog import CaseFilter, Catalog, VolumeObject
from atlasloop.storage.importer import CaseImporter, ImportRequest, ImportResult
from atlasloop.storage.label_versions import LabelVersions
from atlasloop.storage.seg_exports import SegExports
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.staging import StagedUpload, Staging, UploadHeader
from atlasloop.storage.writes import WriteGroup

log = logging.getLogger(__name__)


class StorageCore:
    def __init__(self, settings: StorageSettings, store: ObjectStore, producer: EventProducer) -> None:
        self.settings = settings
        self.store = store
        self.staging = Staging(store, settings.max_upload_bytes, settings.max_chunk_bytes, settings.staging_dir)
        self.labels = LabelVersions(store)
        self._set_locks = KeyedLocks()  # one AI write per (case, model set) at a time
        self.catalog = Catalog(store, self.labels)
        self.segs = SegExports(store, self.labels)
        self.importer = CaseImporter(
            store,
            self.staging,
            self.labels,
            producer,
            settings.max_upload_bytes,
            settings.keep_patient_identifiers,
            settings.deidentify_key.get_secret_value().encode() if settings.deidentify else None,
        )

    def upload(self, header: UploadHeader, chunks: Iterator[bytes]) -> StagedUpload:
        return self.staging.receive(header, chunks)

    def import_case(self, request: ImportRequest, principal: Principal) -> ImportResult:
        """Import a case; labels imported with it become its original labels, so only an admin may."""
        if request.label_upload_id:
            provenance.check_original_import(principal)
        return self.importer.import_case(request, principal)

    def write_label_version(
        self,
        case_id: str,
        upload_id: str,
        requested: LabelSource | None,
        parent: str,
        model_set: str,
        round_: int,
        principal: Principal,
    ) -> LabelRecord:
        """A new label version, of the kind its caller may write (``provenance``).

        Idempotent per upload: the upload's receipt names the version before any object is
        written, so a caller retrying after a crash or a lost answer gets the same version (the
        write finished if it was cut short), never a second one.

        Idempotent per (case, model set) for AI versions: a model set labels a case once, so an
        AI write for a set that already wrote one returns that version and drops the new upload.
        The ensemble's writer uploads afresh each time it runs, and it runs again whenever it
        could not record that it had finished (killed after this write, or the broker or S3 away
        when it announced it): without this rule each of those retries left one more AI version.
        Writes for the same case and set are serialised in this process; across storage replicas
        two writes racing within the same moment could still both land (S3 has no
        create-if-absent that every store here offers)."""
        source = provenance.source_for(principal, requested, self.settings.label_writers)
        author = principal.name
        case = self.catalog.get(case_id)
        receipt = self.staging.receipt(upload_id, author)
        if receipt is not None:
            if receipt.get("case_id") != case_id or receipt.get("kind") != "label":
                raise Conflict(f"upload {upload_id} was already used for another case or purpose")
            with contextlib.suppress(NotFound):
                record = self.labels.get(case_id, str(receipt["version"]))
                self.staging.discard(upload_id)
                return record
        if parent:
            self.labels.get(case_id, parent)
        one_per_set = source == LabelSource.AI and bool(model_set) and receipt is None
        with self._set_locks.hold(f"{case_id}/{model_set}") if one_per_set else contextlib.nullcontext():
            if one_per_set and (made := self.labels.made_by(case_id, model_set)) is not None:
                self.staging.file_name(upload_id)  # an upload that is not there is still an error
                self.staging.discard(upload_id)
                log.info(
                    "AI version already written for this model set",
                    extra={"case_id": case_id, "model_set": model_set, "version": made.version},
                )
                return made
            record = self._write_label(case, case_id, upload_id, receipt, source, parent, model_set, round_, author)
        self.staging.discard(upload_id)
        log.info("label version written", extra={"case_id": case_id, "source": str(source), "author": author})
        return record

    def _write_label(
        self,
        case: CaseRecord,
        case_id: str,
        upload_id: str,
        receipt: dict | None,
        source: str,
        parent: str,
        model_set: str,
        round_: int,
        author: str,
    ) -> LabelRecord:
        with (
            tempfile.TemporaryDirectory(prefix="atlasloop-label-") as tmp,
            self.staging.fetched(ids.validate_upload_id(upload_id)) as path,
        ):
            labels = load_nifti(path, labels=True)
            if not case.geometry.matches(labels):
                raise ImageError(
                    path.name, f"label grid {labels.shape} does not match the case's CT {tuple(case.geometry.shape)}"
                )
            labels = labels.with_array(validate_label_map(labels.array, path.name))
            version = str(receipt["version"]) if receipt else ids.new_version()
            with WriteGroup(self.store) as group:
                if receipt is None:
                    group.put_json(
                        layout.upload_receipt_key(upload_id),
                        {"kind": "label", "case_id": case_id, "version": version, "author": author},
                    )
                return self.labels.write(
                    group, case_id, labels, source, parent, model_set, round_, author, Path(tmp), version
                )

    def volume(self, case_id: str, kind: str, version: str) -> VolumeObject:
        """The stored object behind a volume reference; a DICOM SEG is built on first request."""
        if kind == "dicom_seg":
            return self.segs.volume(self.catalog.get(case_id), version)
        return self.catalog.volume(case_id, kind, version)

    def display_copy(self, case_id: str, kind: str, version: str) -> VolumeObject:
        """The display-ready copy storage wrote beside a CT or label version (NotFound when it wrote
        none), with the checksum the store recorded as the copy was written (an object without one is
        read once here to give the stream's header one)."""
        self.volume(case_id, kind, version)  # the volume itself, named as for a download of it
        if kind == "ct":
            key = layout.display_ct_key(case_id)
        elif kind == "label":
            key = layout.display_label_key(case_id, version)
        else:
            raise InvalidInput(f"display copies are kept of CTs and label versions, not of {kind}")
        try:
            stored = self.store.stat(key)
        except NotFound:
            raise NotFound(f"no display copy of {kind} {version or case_id!r}: read the NIfTI") from None
        if stored.sha256:
            return VolumeObject(key, stored.sha256, stored.size_bytes)
        digest, size = hashlib.sha256(), 0
        for chunk in self.store.iter_chunks(key, self.settings.download_chunk_bytes):
            digest.update(chunk)
            size += len(chunk)
        return VolumeObject(key, digest.hexdigest(), size)

    def download(
        self, case_id: str, kind: str, version: str, chunk_bytes: int, display: bool = False
    ) -> Iterator[tuple[str, object]]:
        """('header', VolumeObject), then ('data', bytes)..., then ('sha256', hex) once verified;
        ``display``: the display-ready copy instead of the NIfTI."""
        size = min(chunk_bytes or self.settings.download_chunk_bytes, self.settings.max_chunk_bytes)
        if size < 0:
            raise InvalidInput("chunk_bytes must be >= 0")
        volume = self.display_copy(case_id, kind, version) if display else self.volume(case_id, kind, version)
        yield "header", volume
        digest = hashlib.sha256()
        for chunk in self.store.iter_chunks(volume.key, size):
            digest.update(chunk)
            yield "data", chunk
        if digest.hexdigest() != volume.sha256:
            raise NotFound(f"stored object {volume.key} does not match its recorded checksum")
        yield "sha256", digest.hexdigest()

    def presign_download(self, case_id: str, kind: str, version: str, expires_s: int) -> tuple[str, int]:
        volume = self.volume(case_id, kind, version)
        seconds = self._lifetime(expires_s)
        return self.store.presign_get(volume.key, timedelta(seconds=seconds)), seconds

    def presign_upload(
        self, file_name: str, expires_s: int, max_bytes: int
    ) -> tuple[str, str, dict[str, str], int, int]:
        """(upload id, form URL, form fields, byte limit, lifetime in seconds)."""
        seconds = self._lifetime(expires_s)
        upload_id, url, fields, limit = self.staging.presign_post(file_name, timedelta(seconds=seconds), max_bytes)
        return upload_id, url, fields, limit, seconds

    def _lifetime(self, expires_s: int) -> int:
        if expires_s < 0:
            raise InvalidInput("expires_s must be >= 0")
        return min(expires_s or self.settings.presign_default_s, self.settings.presign_max_s)

    def get_case(self, case_id: str) -> CaseRecord:
        return self.catalog.get(case_id)

    def announce(self, case_id: str) -> CaseRecord:
        """Publish ``case.ingested`` again for a stored case (tracking's reconciliation sweep)."""
        record = self.catalog.get(case_id)
        self.importer.announce(record)
        return record

    def list_cases(self, page_size: int, token: str, keep: CaseFilter | None = None) -> tuple[list[CaseRecord], str]:
        return self.catalog.page(page_size, token, keep)

    def list_label_versions(self, case_id: str) -> list[LabelRecord]:
        self.catalog.get(case_id)
        return self.labels.list(case_id)
