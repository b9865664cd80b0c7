"""Approved labels go back to the hospital's PACS as DICOM SEG (``ATLASLOOP_STORAGE_PACS__SEND_APPROVED``).

Storage consumes ``annotation.approved``. An event is a hint, not a fact: tracking confirms the
revision first (:class:`atlasloop.common.approvals.ApprovalCheck`), and only its case and label
version are used. A confirmed label of a case imported from DICOM is built as SEG
(:mod:`atlasloop.storage.seg_exports`) and stored in the PACS by STOW-RS; a record at
``cases/<id>/exports/<version>.sent.json`` makes a redelivered event a no-op. A PACS that does not
answer raises ``NotReady``: the consumer waits and tries again, it is not a poison event. A case
imported from NIfTI has no series to point at and is skipped with a log line.
"""

from __future__ import annotations

import logging
from typing import Protocol

from atlasloop.common import layout
from atlasloop.common.approvals import Verified
from atlasloop.common.dicomweb import DicomWebClient
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.storage.case_meta import now_iso
from atlasloop.storage.catalog import Catalog
from atlasloop.storage.seg_exports import SegExports

log = logging.getLogger(__name__)


class Confirms(Protocol):
    def verify(self, event: events_pb2.AnnotationApproved) -> Verified | None: ...


class ApprovedToPacs:
    def __init__(
        self, check: Confirms, catalog: Catalog, segs: SegExports, store: ObjectStore, pacs: DicomWebClient, url: str
    ) -> None:
        self._check, self._catalog, self._segs, self._store, self._pacs, self._url = (
            check,
            catalog,
            segs,
            store,
            pacs,
            url,
        )

    def on_approved(self, event: events_pb2.AnnotationApproved) -> bool:
        """Send the approved label's SEG once; True when it was sent now."""
        verified = self._check.verify(event)
        if verified is None:
            return False  # refused and logged by the check
        record = self._catalog.get(verified.case_id)
        if record.dicom is None:
            log.info("approved label not sent: the case was not imported from DICOM", extra={"case_id": record.case_id})
            return False
        sent = layout.seg_sent_key(verified.case_id, verified.label_version)
        if self._store.exists(sent):
            return False
        seg = self._segs.volume(record, verified.label_version)
        self._pacs.store([self._store.get_bytes(seg.key)])
        self._store.put_json(
            sent,
            {"revision_id": verified.revision_id, "sha256": seg.sha256, "pacs": self._url, "sent_at": now_iso()},
        )
        log.info(
            "approved label sent to the PACS as SEG",
            extra={"case_id": verified.case_id, "label_version": verified.label_version},
        )
        return True
