"""The storage service started in this process for a test, and the tokens its tests call with."""

from __future__ import annotations

import contextlib

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import upload_file
from atlasloop.events.v1 import events_pb2
from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

from .conftest import EventCollector, start_in_process

TOKENS = {
    "tok-admin": "ops:admin",
    "tok-ann": "ann:annotator",
    "tok-svc": "inference:service",
    "tok-trk": "tracking:service",
    "tok-trn": "training:service",
}
ADMIN = [("authorization", "Bearer tok-admin")]
SERVICE = [("authorization", "Bearer tok-svc")]  # the inference service: writes AI labels
TRACKING = [("authorization", "Bearer tok-trk")]  # writes human labels (revisions of held leases)


@contextlib.contextmanager
def running_storage(stack, unique, **settings_fields):
    """(stub, object store, case.ingested collector, host:port) of a storage service on the
    stack's S3 and broker, in a bucket and topic prefix of its own."""
    settings = StorageSettings(
        port=0,
        max_upload_bytes=64 * 1024 * 1024,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"storage-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"s{unique}."}),
        auth={"dev_tokens": TOKENS},
        **settings_fields,
    )
    service, channel = start_in_process(build(settings), settings)
    collector = EventCollector(settings.kafka, [events_pb2.CaseIngested])
    try:
        yield (
            storage_pb2_grpc.StorageServiceStub(channel),
            ObjectStore(settings.s3),
            collector,
            f"127.0.0.1:{service.port}",
        )
    finally:
        collector.close()
        channel.close()
        service.stop(0)


def import_file(stub, path, **fields):
    upload_id = upload_file(stub, path, ADMIN, chunk_bytes=64 * 1024)
    return stub.ImportCase(storage_pb2.ImportCaseRequest(upload_id=upload_id, **fields), metadata=ADMIN)
