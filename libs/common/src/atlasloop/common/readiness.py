"""Readiness checks: does a dependency answer right now?

A check is a named callable that returns when the dependency answers and raises when it does not.
The health monitor runs them periodically; the service is SERVING only while all of them pass.
Each check opens a short-timeout connection of its own, so a hung dependency cannot hang the
monitor for longer than its timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasloop.common.settings import KafkaSettings
from atlasloop.common.tls import ClientTls, open_channel

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from atlasloop.common.objectstore import ObjectStore


@dataclass(frozen=True)
class ReadinessCheck:
    """``probe`` raises when the dependency ``name`` does not answer."""

    name: str
    probe: Callable[[], None]


def s3_bucket_check(store: ObjectStore) -> ReadinessCheck:
    """The service's bucket exists and answers (``store`` is an ObjectStore), and holds a project of
    this process's label schema (recorded by the first service to start; checked once)."""
    from atlasloop.common.project_schema import agree_on_schema
    from atlasloop.imaging.labels import SCHEMA

    agreed = threading.Event()

    def probe() -> None:
        store.check_bucket()
        if not agreed.is_set():
            agree_on_schema(store, SCHEMA)
            agreed.set()

    return ReadinessCheck(f"s3:{store.bucket}", probe)


def kafka_check(settings: KafkaSettings, timeout_s: float = 2.0) -> ReadinessCheck:
    """The Kafka broker answers a metadata request; topics are created once when allowed."""
    from confluent_kafka.admin import AdminClient

    from atlasloop.common.events import ensure_topics

    admin = AdminClient(settings.client_config() | {"socket.timeout.ms": 2000})
    topics_made = threading.Event()

    def probe() -> None:
        admin.list_topics(timeout=timeout_s)
        if settings.create_topics and not topics_made.is_set():
            ensure_topics(settings)
            topics_made.set()

    return ReadinessCheck("kafka", probe)


def database_check(engine: Engine) -> ReadinessCheck:
    """The database answers ``SELECT 1`` (``engine`` is an SQLAlchemy engine)."""
    from sqlalchemy import text

    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return ReadinessCheck("database", probe)


def grpc_health_check(name: str, target: str, timeout_s: float = 2.0, tls: ClientTls | None = None) -> ReadinessCheck:
    """A gRPC server answers the standard health check with SERVING."""
    channel = open_channel(target, tls)
    stub = health_pb2_grpc.HealthStub(channel)

    def probe() -> None:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"{target} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")

    return ReadinessCheck(name, probe)
