"""Assembles the tracking service: migrations, core, servicer, event consumer, outbox relay, and the
reconciliation sweep with storage."""

from __future__ import annotations

import logging
import threading

import grpc

from atlasloop.common.database import make_engine
from atlasloop.common.events import ConsumerThread, EventProducer
from atlasloop.common.readiness import ReadinessCheck, database_check, kafka_check
from atlasloop.common.server import ServiceSpec
from atlasloop.common.storage_client import StorageClient
from atlasloop.tracking import migrate, observed
from atlasloop.tracking.core import TrackingCore
from atlasloop.tracking.events_in import HANDLERS
from atlasloop.tracking.outbox import OutboxRelay
from atlasloop.tracking.servicer import TrackingServiceServicer
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

log = logging.getLogger(__name__)
SERVICE = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"]


def migration_check(settings: TrackingSettings, engine) -> ReadinessCheck:
    """Apply the migrations once the database answers; NOT_SERVING until the schema is current."""
    done = threading.Event()

    def probe() -> None:
        if not done.is_set():
            migrate.upgrade(engine)
            done.set()

    return ReadinessCheck("schema", probe if settings.migrate_on_start else lambda: None)


def build(settings: TrackingSettings) -> ServiceSpec:
    engine = make_engine(settings.database)
    storage = StorageClient(settings.storage_target, settings.storage_token, settings.client_tls)
    core = TrackingCore(settings, engine, storage)
    servicer = TrackingServiceServicer(core)
    observed.register_gauges(core.sessions)
    producer = EventProducer(settings.kafka, "tracking")
    relay = OutboxRelay(core.sessions, producer)
    events_in = ConsumerThread(
        settings.kafka, "tracking", list(HANDLERS), lambda event, _delivery: core.apply_event(event)
    )

    def register(server: grpc.Server) -> None:
        tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)

    on_start = [relay.start, core.reconciler.start] + ([events_in.start] if settings.consume_events else [])
    return ServiceSpec(
        name="tracking",
        services=[SERVICE],
        register=register,
        checks=[database_check(engine), migration_check(settings, engine), kafka_check(settings.kafka)],
        on_start=on_start,
        on_stop=[core.reconciler.stop, events_in.stop, relay.stop, producer.close, storage.close, engine.dispose],
    )
