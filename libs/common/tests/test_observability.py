"""Metrics and traces of a service, observed from outside: a real gRPC server in this process, a
real client channel, Prometheus samples read back from the registry and spans from the exporter."""

from __future__ import annotations

import json

import grpc
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import REGISTRY

from atlasloop.common import metrics, tracing
from atlasloop.common.errors import NotFound
from atlasloop.common.server import GrpcService, ServiceSpec
from atlasloop.common.settings import AuthSettings, ServiceSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

TOKENS = {"tok": "svc:service"}
GET_CASE = "/atlasloop.storage.v1.StorageService/GetCase"


class _Servicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def GetCase(self, request, context):
        self.seen.append(tracing.current_headers())
        raise NotFound(f"case {request.case_id!r} does not exist")


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """Spans of this test, written by the JSON-lines exporter the local stack uses."""
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "atlasloop-test"}))
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonLinesExporter(path)))
    monkeypatch.setattr(tracing, "_configured", provider)
    yield lambda: [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    provider.shutdown()


@pytest.fixture
def server():
    seen: list = []
    spec = ServiceSpec(
        name="test",
        services=[storage_pb2.DESCRIPTOR.services_by_name["StorageService"]],
        register=lambda s: storage_pb2_grpc.add_StorageServiceServicer_to_server(_Servicer(seen), s),
    )
    service = GrpcService(spec, ServiceSettings(port=0, health_poll_s=60, auth=AuthSettings(dev_tokens=TOKENS)))
    service.start()
    channel = tracing.traced_channel(grpc.insecure_channel(f"127.0.0.1:{service.port}"))
    yield storage_pb2_grpc.StorageServiceStub(channel), seen
    channel.close()
    service.stop(0)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": metrics._service, **labels}) or 0.0


def test_every_rpc_is_counted_by_code_and_timed(server):
    stub, _ = server
    before = _sample("atlasloop_rpc_requests_total", method=GET_CASE, code="NOT_FOUND")
    refused = _sample("atlasloop_rpc_requests_total", method=GET_CASE, code="UNAUTHENTICATED")
    timed = _sample("atlasloop_rpc_duration_seconds_count", method=GET_CASE)
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"), metadata=[("authorization", "Bearer tok")])
    with pytest.raises(grpc.RpcError):
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"))
    assert _sample("atlasloop_rpc_requests_total", method=GET_CASE, code="NOT_FOUND") == before + 3
    assert _sample("atlasloop_rpc_requests_total", method=GET_CASE, code="UNAUTHENTICATED") == refused + 1
    assert _sample("atlasloop_rpc_duration_seconds_count", method=GET_CASE) == timed + 4


def test_a_call_continues_the_callers_trace_across_the_wire(server, recorded):
    stub, seen = server
    with tracing.span("caller") as caller, pytest.raises(grpc.RpcError):
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"), metadata=[("authorization", "Bearer tok")])
    spans = {s["name"]: s for s in recorded()}
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    assert spans[GET_CASE]["trace_id"] == trace_id  # the server span joined the caller's trace
    assert spans[GET_CASE]["parent_id"] == spans["caller"]["span_id"]
    assert seen[-1]["traceparent"].split("-")[1] == trace_id  # and the handler sees it to pass on


def test_without_an_exporter_the_context_is_carried_unchanged(monkeypatch):
    """A service that records nothing still hands the trace on (tracing can be on in some services)."""
    monkeypatch.setattr(tracing, "_configured", None)
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.span("work", incoming):
        assert tracing.in_trace()
        assert tracing.current_headers()["traceparent"] == incoming["traceparent"]
    assert not tracing.in_trace()


def test_a_span_can_join_a_stored_trace_and_link_the_current_one(recorded):
    stored = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.span("rpc") as rpc, tracing.span("revise case", stored, link_current=True):
        pass
    spans = {s["name"]: s for s in recorded()}
    assert spans["revise case"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert spans["revise case"]["parent_id"] == "b7ad6b7169203331"
    rpc_context = rpc.get_span_context()
    assert spans["revise case"]["links"] == [f"{rpc_context.trace_id:032x}/{rpc_context.span_id:016x}"]


def test_consumer_lag_is_read_from_librdkafka_statistics():
    stats = {
        "topics": {
            "case.scored": {
                "partitions": {"0": {"consumer_lag": 4}, "1": {"consumer_lag": 3}, "-1": {"consumer_lag": 9}}
            },
            "case.queued": {"partitions": {"0": {"consumer_lag": -1}}},
        }
    }
    metrics.record_kafka_lag(json.dumps(stats))
    assert _sample("atlasloop_event_consumer_lag", topic="case.scored") == 7  # the internal partition -1 is not one
    assert (
        REGISTRY.get_sample_value("atlasloop_event_consumer_lag", {"service": metrics._service, "topic": "case.queued"})
        is None
    )
