"""Assembles the storage service: its core, servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from minio.versioningconfig import ENABLED, VersioningConfig

from atlasloop.common.approvals import ApprovalCheck
from atlasloop.common.dicomweb import DicomWebClient
from atlasloop.common.events import ConsumerThread, EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.outages import outage
from atlasloop.common.readiness import ReadinessCheck, kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.events.v1 import events_pb2
from atlasloop.storage.core import StorageCore
from atlasloop.storage.pacs_sender import ApprovedToPacs
from atlasloop.storage.servicer import StorageServiceServicer
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.staging_expiry import expire_staging
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)
SERVICE = storage_pb2.DESCRIPTOR.services_by_name["StorageService"]


def once_check(name: str, action: Callable[[], None], what: str) -> ReadinessCheck:
    """Run ``action`` once the bucket answers (tried again while S3 is away); a backend without
    the feature is logged, not fatal."""
    done = {"tried": False}

    def probe() -> None:
        if done["tried"]:
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - an S3 API without the feature is acceptable
            if outage(exc):
                return  # S3 is away: tried again at the next probe
            log.warning(f"{what} not set", extra={"reason": str(exc)})
        done["tried"] = True

    return ReadinessCheck(name, probe)


def versioning_check(store: ObjectStore, wanted: bool) -> ReadinessCheck:
    """Bucket versioning, where the backend has it: label versions are immutable keys of their
    own either way."""

    def enable() -> None:
        if wanted:
            store.client.set_bucket_versioning(store.bucket, VersioningConfig(ENABLED))

    return once_check("s3-versioning", enable, "bucket versioning")


def staging_expiry_check(store: ObjectStore, days: int) -> ReadinessCheck:
    """The staging expiry rule; without lifecycle rules staged objects stay until removed by hand."""
    return once_check("s3-staging-expiry", lambda: expire_staging(store, days), "staging expiry")


def build(settings: StorageSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    producer = EventProducer(settings.kafka, "storage")
    core = StorageCore(settings, store, producer)
    servicer = StorageServiceServicer(core)
    on_start: list[Callable[[], None]] = []
    on_stop: list[Callable[[], None]] = [producer.close]
    if settings.pacs.send_approved:
        check = ApprovalCheck(settings.tracking_target, settings.tracking_token, tls=settings.client_tls)
        pacs = settings.pacs
        client = DicomWebClient(
            pacs.url, pacs.username, pacs.password.get_secret_value(), pacs.timeout_s, ca_file=pacs.ca_file
        )
        sender = ApprovedToPacs(check, core.catalog, core.segs, store, client, pacs.url)
        consumer = ConsumerThread(
            settings.kafka,
            "storage-pacs",
            [events_pb2.AnnotationApproved],
            lambda event, _delivery: sender.on_approved(event),
        )
        on_start.append(consumer.start)
        on_stop += [consumer.stop, check.close]

    def register(server: grpc.Server) -> None:
        storage_pb2_grpc.add_StorageServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="storage",
        services=[SERVICE],
        register=register,
        checks=[
            s3_bucket_check(store),
            versioning_check(store, settings.bucket_versioning),
            staging_expiry_check(store, settings.staging_expiry_days),
            kafka_check(settings.kafka),
        ],
        on_start=on_start,
        on_stop=on_stop,
    )
