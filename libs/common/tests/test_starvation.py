"""Streams cannot starve a server: open (unauthenticated) health and reflection streams, idle
request streams and one caller's many streams are bounded, and probes have threads of their own.
A real gRPC server in this process with a small worker pool, real client channels."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc

from atlasloop.common.readiness import ReadinessCheck
from atlasloop.common.server import GrpcService, ServiceSpec
from atlasloop.common.settings import AuthSettings, ServiceSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

TOKENS = {"tok-a": "alice:admin", "tok-b": "bob:admin"}
A, B = [("authorization", "Bearer tok-a")], [("authorization", "Bearer tok-b")]


class _Servicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self) -> None:
        self.release = threading.Event()

    def GetCase(self, request, context):
        if request.case_id == "slow":
            self.release.wait(30)
        return storage_pb2.GetCaseResponse(info=storage_pb2.CaseInfo(case_id=request.case_id))

    def UploadVolume(self, request_iterator, context):
        size = sum(len(r.data) for r in request_iterator)
        return storage_pb2.UploadVolumeResponse(upload_id=f"u-{size}")


@pytest.fixture
def small_server(free_port):
    servicer = _Servicer()
    spec = ServiceSpec(
        name="test",
        services=[storage_pb2.DESCRIPTOR.services_by_name["StorageService"]],
        register=lambda s: storage_pb2_grpc.add_StorageServiceServicer_to_server(servicer, s),
        checks=[ReadinessCheck("always", lambda: None)],
    )
    settings = ServiceSettings(
        port=0,
        probe_port=free_port,
        max_workers=4,
        max_open_streams=2,
        max_streams_per_principal=2,
        stream_idle_s=1.0,
        health_poll_s=0.05,
        auth=AuthSettings(dev_tokens=TOKENS),
    )
    service = GrpcService(spec, settings)
    service.start()
    channels = []

    def channel(port: int | None = None) -> grpc.Channel:
        made = grpc.insecure_channel(f"127.0.0.1:{port or service.port}")
        channels.append(made)
        return made

    yield service, servicer, channel
    servicer.release.set()
    for made in channels:
        made.close()
    service.stop(0)


@pytest.fixture
def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_quickly(channel: grpc.Channel, metadata=A) -> bool:
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    reply = stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"), metadata=metadata, timeout=3)
    return reply.info.case_id == "c"


def _hold_reflection(channel: grpc.Channel, stop: threading.Event) -> grpc.RpcError | None:
    """A reflection stream that sends nothing and waits: what a hostile client does."""

    def requests():
        stop.wait(30)
        return
        yield  # a generator that never sends

    try:
        list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(requests(), timeout=30))
    except grpc.RpcError as exc:
        return exc
    return None


def test_unauthenticated_streams_cannot_hang_the_server(small_server):
    _service, _servicer, channel = small_server
    # health watches answer once and end, however many are opened
    for _ in range(10):
        replies = list(health_pb2_grpc.HealthStub(channel()).Watch(health_pb2.HealthCheckRequest(), timeout=5))
        assert [r.status for r in replies] == [health_pb2.HealthCheckResponse.SERVING]
    # held reflection streams: two get a slot, the others are refused at once
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(_hold_reflection(channel(), stop))) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    refused = [r for r in results if r is not None]
    assert len(refused) == 4 and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert "unauthenticated streams" in refused[0].details()
    assert _answers_quickly(channel())  # work is still served while the two are held
    stop.set()
    for thread in threads:
        thread.join(10)


def test_an_idle_request_stream_is_cancelled_and_one_caller_holds_few_streams(small_server):
    _service, _servicer, channel = small_server
    stop = threading.Event()

    def silent():
        stop.wait(20)
        return
        yield

    outcomes: dict[str, grpc.StatusCode | str] = {}

    def upload(name: str, metadata) -> None:
        try:
            storage_pb2_grpc.StorageServiceStub(channel()).UploadVolume(silent(), metadata=metadata, timeout=20)
            outcomes[name] = "finished"
        except grpc.RpcError as exc:
            outcomes[name] = exc.code()

    started = time.monotonic()
    threads = [threading.Thread(target=upload, args=(f"a{i}", A)) for i in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(15)
    stop.set()
    codes = sorted(str(code) for code in outcomes.values())
    # two idle streams cancelled by the idle deadline (1 s; the client sees CANCELLED, the server logs
    # why), the third refused at once: alice holds two at most
    assert codes == sorted([str(grpc.StatusCode.CANCELLED)] * 2 + [str(grpc.StatusCode.RESOURCE_EXHAUSTED)])
    assert time.monotonic() - started < 10
    assert _answers_quickly(channel(), B)


def test_probes_answer_on_their_own_port_while_every_worker_is_busy(small_server):
    service, servicer, channel = small_server
    stub = storage_pb2_grpc.StorageServiceStub(channel())
    calls = [stub.GetCase.future(storage_pb2.GetCaseRequest(case_id="slow"), metadata=A, timeout=30) for _ in range(4)]
    time.sleep(0.5)  # all four workers now wait in GetCase
    with pytest.raises(grpc.RpcError) as err:  # the work port's queue is full of work
        health_pb2_grpc.HealthStub(channel()).Check(health_pb2.HealthCheckRequest(), timeout=1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    probe = health_pb2_grpc.HealthStub(channel(service.settings.probe_port))
    started = time.monotonic()
    assert probe.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
    assert time.monotonic() - started < 1
    servicer.release.set()
    assert all(c.result().info.case_id == "slow" for c in calls)
