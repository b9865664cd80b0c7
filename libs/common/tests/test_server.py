"""The bootstrap in process: auth refuses, errors map to codes, health and reflection stay open."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.readiness import ReadinessCheck
from atlasloop.common.server import GrpcService, ServiceSpec
from atlasloop.common.settings import AuthSettings, ServiceSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

TOKENS = {"tok-ann": "ann:annotator", "tok-rev": "rev:reviewer", "tok-svc": "svc:service"}


class _Servicer(storage_pb2_grpc.StorageServiceServicer):
    def GetCase(self, request, context):
        if request.case_id == "boom":
            raise RuntimeError("secret internals")
        raise NotFound(f"case {request.case_id!r} does not exist")

    def DownloadVolume(self, request, context):
        yield storage_pb2.DownloadVolumeResponse(data=b"first")
        raise InvalidInput("chunk size too large")


@pytest.fixture
def server():
    spec = ServiceSpec(
        name="test",
        services=[storage_pb2.DESCRIPTOR.services_by_name["StorageService"]],
        register=lambda s: storage_pb2_grpc.add_StorageServiceServicer_to_server(_Servicer(), s),
        checks=[ReadinessCheck("always", lambda: None)],
    )
    settings = ServiceSettings(port=0, health_poll_s=0.05, auth=AuthSettings(dev_tokens=TOKENS))
    service = GrpcService(spec, settings)
    service.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    yield service, channel
    channel.close()
    service.stop(0)


def _md(token):
    return [("authorization", f"Bearer {token}")]


def test_without_token_unauthenticated(server):
    _, channel = server
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="c"), metadata=_md("forged"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_role_permission_denied(server):
    _, channel = server
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:  # ImportCase: admin or service only
        stub.ImportCase(storage_pb2.ImportCaseRequest(upload_id="u"), metadata=_md("tok-rev"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in err.value.details()


def test_allowed_role_reaches_handler_and_domain_errors_map(server):
    _, channel = server
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="c9"), metadata=_md("tok-ann"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "c9" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetCase(storage_pb2.GetCaseRequest(case_id="boom"), metadata=_md("tok-ann"))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.value.details()


def test_streaming_errors_map_after_partial_output(server):
    _, channel = server
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    stream = stub.DownloadVolume(storage_pb2.DownloadVolumeRequest(case_id="c"), metadata=_md("tok-svc"))
    assert next(stream).data == b"first"
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unbuilt_rpcs_answer_unimplemented(server):
    _, channel = server
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ListCases(storage_pb2.ListCasesRequest(), metadata=_md("tok-svc"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_and_reflection_need_no_token(server):
    service, channel = server
    service.monitor.check_once()
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="atlasloop.storage.v1.StorageService")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    live = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="atlasloop.liveness"))
    assert live.status == health_pb2.HealthCheckResponse.SERVING
    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(responses).list_services_response.service}
    assert "atlasloop.storage.v1.StorageService" in names
