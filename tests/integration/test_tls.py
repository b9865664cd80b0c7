"""gRPC over TLS with a test CA, against the real S3, Kafka and PostgreSQL: storage and tracking
serve mutual TLS; a viewer's client and the command line call them with a certificate; tracking
calls storage over mutual TLS and consumes its events meanwhile; and a plaintext caller, a caller
without a certificate and a caller that trusts another CA are all refused, changing nothing. And S3
over HTTPS behind a private CA, trusted by file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import grpc
import pytest
import urllib3

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.tls import ClientTls, open_channel
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.devstack.waiting import wait_until
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
