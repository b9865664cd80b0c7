"""Where a prediction's outputs go: compact probabilities in S3, the pseudo-label as an AI label
version through the storage service, then ``case.predicted``; idempotent per (case, model set)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from atlasloop.common import layout
from atlasloop.common.errors import NotFound
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.storage_client import StorageClient
from atlasloop.common.tls import ClientTls
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.volume import Volume, save_nifti

EVENT_NAMESPACE = uuid.UUID("3b0c2f8e-4b9d-4f57-9a3e-5c7d1e2f4a60")


class OutputWriter:
    def __init__(
        self,
        store: ObjectStore,
        producer: EventProducer,
        storage_target: str,
        storage_token: str,
        tls: ClientTls | None = None,
    ) -> None:
        self._store = store
        self._producer = producer
        self._storage = StorageClient(storage_target, storage_token, tls)

    def done(self, case_id: str, model_set: str) -> dict[str, Any] | None:
        """The record of an earlier, complete prediction (outputs durable and announced)."""
        try:
            return self._store.get_json(layout.prediction_record_key(case_id, model_set))
        except NotFound:
            return None

    def write(
        self, case_id: str, model_set: str, compact: bytes, labels: Volume, context: dict[str, str] | None = None
    ) -> dict[str, Any]:
        prefix = layout.prediction_prefix(case_id, model_set)
        self._store.put_bytes(layout.ensemble_key(case_id, model_set), compact)
        with tempfile.TemporaryDirectory(prefix="atlasloop-predict-") as tmp:
            version = self._storage.write_ai_version(case_id, save_nifti(labels, Path(tmp) / "ai.nii.gz"), model_set)
        meta = new_meta("inference")
        meta.event_id = str(uuid.uuid5(EVENT_NAMESPACE, f"{case_id}/{model_set}"))  # redelivery keeps the id
        self._producer.publish(
            events_pb2.CasePredicted(
                meta=meta, case_id=case_id, model_set=model_set, predictions_prefix=prefix, label_version=version
            ),
            key=case_id,
            context=context,
        )
        record = {"label_version": version, "predictions_prefix": prefix, "event_id": meta.event_id}
        self._store.put_json(layout.prediction_record_key(case_id, model_set), record)
        return record
