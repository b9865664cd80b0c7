"""Where a prediction's outputs go: compact probabilities in S3, the pseudo-label as an AI label
version through the storage service, then ``case.predicted``; idempotent per (case, model set)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import grpc

from atlasloop.common.errors import NotFound, NotReady
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

EVENT_NAMESPACE = uuid.UUID("3b0c2f8e-4b9d-4f57-9a3e-5c7d1e2f4a60")


def prediction_prefix(case_id: str, model_set: str) -> str:
    return f"cases/{case_id}/predictions/{model_set}/"


class OutputWriter:
    def __init__(self, store: ObjectStore, producer: EventProducer, storage_target: str, storage_token: str) -> None:
        self._store = store
        self._producer = producer
        self._channel = grpc.insecure_channel(storage_target)
        self._storage = storage_pb2_grpc.StorageServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {storage_token}")]

    def done(self, case_id: str, model_set: str) -> dict | None:
        """The record of an earlier, complete prediction (outputs durable and announced)."""
        try:
            return self._store.get_json(prediction_prefix(case_id, model_set) + "published.json")  # type: ignore[return-value]
        except NotFound:
            return None

    def write(self, case_id: str, model_set: str, compact: bytes, labels: Volume) -> dict:
        prefix = prediction_prefix(case_id, model_set)
        self._store.put_bytes(prefix + "ensemble.npz", compact)
        with tempfile.TemporaryDirectory(prefix="atlasloop-predict-") as tmp:
            path = save_nifti(labels, Path(tmp) / "ai.nii.gz")
            try:
                upload_id = upload_file(self._storage, path, self._metadata)
                version = self._storage.WriteLabelVersion(storage_pb2.WriteLabelVersionRequest(
                    case_id=case_id, upload_id=upload_id, source=common_pb2.LABEL_SOURCE_AI, model_set=model_set),
                    metadata=self._metadata, timeout=120).version.label_version
            except grpc.RpcError as exc:
                raise NotReady(f"storage service: {exc.details()}") from None
        meta = new_meta("inference")
        meta.event_id = str(uuid.uuid5(EVENT_NAMESPACE, f"{case_id}/{model_set}"))  # redelivery keeps the id
        self._producer.publish(events_pb2.CasePredicted(meta=meta, case_id=case_id, model_set=model_set,
                                                        predictions_prefix=prefix, label_version=version), key=case_id)
        record = {"label_version": version, "predictions_prefix": prefix, "event_id": meta.event_id}
        self._store.put_json(prefix + "published.json", record)
        return record
