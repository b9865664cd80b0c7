"""The session's real components, started by the project's own stack on test ports.

Nothing here skips: a component that does not start fails the tests that need it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid

import grpc
import pytest

from atlasloop.common import events
from atlasloop.common.server import GrpcService
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """S3 and Kafka on port slot 0 (``ATLASLOOP_TEST_SLOT`` picks another, for a second session beside
    a running one), shared by the tests of this session."""
    stack = Stack(tmp_path_factory.mktemp("stack"), Ports.for_tests(int(os.environ.get("ATLASLOOP_TEST_SLOT", "0"))))
    try:
        stack.start_s3()
        stack.start_kafka()
        yield stack
    finally:
        stack.down()


class EventCollector:
    """A real consumer group on some event topics, collecting in a background thread."""

    def __init__(self, settings, event_types):
        self.received = []
        self.deliveries = []
        self._stop = threading.Event()
        events.ensure_topics(settings, event_types)
        self._consumer = events.EventConsumer(settings, f"collector-{uuid.uuid4().hex[:8]}", event_types, self._record)
        self._thread = threading.Thread(target=self._consumer.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def _record(self, event, delivery):
        self.received.append(event)
        self.deliveries.append(delivery)

    def wait_for(self, count, timeout_s=30.0):
        """Poll until ``count`` events arrived, then linger briefly to catch any extra ones."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        return list(self.received)

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@pytest.fixture
def unique():
    """A short unique suffix for buckets, topic prefixes and ids of one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def registry(stack, unique, monkeypatch):
    """A model registry in this test's own bucket, and the CLI pointed at it (``ATLASLOOP_S3__*``)."""
    from atlasloop.common.objectstore import ObjectStore
    from atlasloop.models.registry import ModelRegistry

    settings = stack.s3_settings(bucket=f"models-{unique}")
    for key, value in {
        "ENDPOINT": settings.endpoint,
        "BUCKET": settings.bucket,
        "ACCESS_KEY": settings.access_key.get_secret_value(),
        "SECRET_KEY": settings.secret_key.get_secret_value(),
    }.items():
        monkeypatch.setenv(f"ATLASLOOP_S3__{key}", value)
    store = ObjectStore(settings)
    store.check_bucket()
    return ModelRegistry(store), store


def start_in_process(spec, settings, timeout_s=30.0):
    """Start a service's gRPC server in this process, wait until its health says SERVING, and open a
    plaintext channel to it."""
    service = serve_in_process(spec, settings, timeout_s)
    return service, grpc.insecure_channel(f"127.0.0.1:{service.port}")


def serve_in_process(spec, settings, timeout_s=30.0):
    """Start a service's gRPC server in this process and wait until its health says SERVING."""
    service = GrpcService(spec, settings)
    service.start()
    deadline = time.monotonic() + timeout_s
    while not service.monitor.check_once():
        if time.monotonic() > deadline:
            service.stop(0)
            raise TimeoutError(f"{spec.name} not ready: {service.monitor.failing}")
        time.sleep(0.2)
    return service


@pytest.fixture
def fresh_database(stack, unique):
    """An empty PostgreSQL database of its own on the stack's server, dropped afterwards."""
    import psycopg

    from atlasloop.common.settings import DatabaseSettings

    base = stack.database_url()
    admin_dsn = base.replace("postgresql+psycopg://", "postgresql://")
    name = f"atl_{unique}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield DatabaseSettings(url=base.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def running_services(stack, names, settings):
    """Start ``names`` as the stack's own processes (with Ray unimportable, as everywhere) with
    per-test ``settings`` (service -> environment keys without the prefix: a bucket, a topic prefix),
    and stop them afterwards."""
    saved = {name: stack.service_settings.get(name) for name in names}
    for name in names:
        stack.service_settings[name] = {**(saved[name] or {}), **settings.get(name, {})}
    try:
        for name in names:
            stack.start_service(name)
        for name in names:
            stack.wait_service(name)
        yield {name: grpc.insecure_channel(stack.service_target(name)) for name in names}
    finally:
        for name in reversed(names):
            stack.processes.stop(name)
        for name, value in saved.items():
            if value is None:
                stack.service_settings.pop(name, None)
            else:
                stack.service_settings[name] = value


def isolated(bucket: str, topic_prefix: str) -> dict[str, str]:
    """Settings that give a test's services their own bucket and topics on the shared stack."""
    return {"S3__BUCKET": bucket, "KAFKA__TOPIC_PREFIX": topic_prefix}


@pytest.fixture
def storage(stack, unique):
    """(stub, object store, case.ingested collector) of a storage service of the test's own."""
    from .storage_service import running_storage

    with running_storage(stack, unique) as parts:
        yield parts[:3]
