"""A label version as DICOM SEG, for a case imported from DICOM: built once, kept, downloaded like
any volume (``DownloadVolume`` with ``VOLUME_KIND_DICOM_SEG``).

The SEG is built from the label map and the series identity the import kept
(:mod:`atlasloop.imaging.dicom_seg`) and stored at ``cases/<id>/exports/<version>.seg.dcm``. A label
version never changes and the SEG's UIDs and dates derive from it, so two requests racing to build
it write the same bytes.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.dicom_identity import SeriesIdentity
from atlasloop.imaging.dicom_seg import SegProvenance, write_seg
from atlasloop.imaging.volume import load_nifti
from atlasloop.storage.case_meta import CaseRecord
from atlasloop.storage.catalog import VolumeObject
from atlasloop.storage.label_versions import LabelVersions

log = logging.getLogger(__name__)


class SegExports:
    def __init__(self, store: ObjectStore, labels: LabelVersions) -> None:
        self._store = store
        self._labels = labels

    def volume(self, record: CaseRecord, version: str) -> VolumeObject:
        """The stored SEG of ``version``, built first if it is not there yet."""
        if not version:
            raise InvalidInput("a DICOM SEG download needs label_version")
        if record.dicom is None:
            raise InvalidInput(f"case {record.case_id!r} was not imported from DICOM: no series to reference")
        label = self._labels.get(record.case_id, version)
        key = layout.seg_key(record.case_id, version)
        try:
            stored = self._store.stat(key)
        except NotFound:
            with tempfile.TemporaryDirectory(prefix="atlasloop-seg-") as tmp:
                path = Path(tmp) / "labels.nii.gz"
                self._store.download_file(label.key, path)
                labels = load_nifti(path, labels=True)
            provenance = SegProvenance(
                record.case_id,
                version,
                automatic=label.source == "ai",
                author=label.model_set if label.source == "ai" else label.author,
                created_at=datetime.fromisoformat(label.created_at),
            )
            data = write_seg(labels, SeriesIdentity.from_json(record.dicom), provenance)
            stored = self._store.put_bytes(key, data, content_type="application/dicom")
            log.info("DICOM SEG built", extra={"case_id": record.case_id, "label_version": version})
        return VolumeObject(stored.key, stored.sha256, stored.size_bytes)
