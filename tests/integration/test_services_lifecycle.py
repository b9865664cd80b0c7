"""All six services against the real stack: health follows each dependency down and back up,
RPCs are refused without a token or with the wrong role, and ``down`` leaves nothing behind."""

from __future__ import annotations

import socket
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasloop.devstack.ports import SERVICES, Ports
from atlasloop.devstack.processes import group_members
from atlasloop.devstack.stack import NEEDS, Stack
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("full"), Ports.for_tests(1), private_postgres=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def _status(stack, name):
    with grpc.insecure_channel(stack.service_target(name)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return None
        return reply.status


def _wait_statuses(stack, expected, timeout_s=45.0):
    """Poll health until every service shows its expected SERVING (True) or not (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {name: _status(stack, name) == SERVING for name in expected}
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert seen == expected


def _component_restart(stack, component):
    starts = {
        "s3": stack.start_s3,
        "kafka": stack.start_kafka,
        "postgres": stack.start_private_postgres,
        "ray": stack.start_ray,
    }
    if component == "ray":
        stack.processes.stop("ray-node")  # the whole cluster, as when KubeRay replaces it
    stack.processes.stop(component)
    _wait_statuses(stack, {name: component not in NEEDS[name] for name in SERVICES})
    starts[component]()
    if component == "ray":
        # A new cluster has no Serve application until its owner deploys one (KubeRay does so from
        # the RayService). No service is a Ray driver, so none needs a restart: each recovers
        # once the cluster answers, inference once the application runs.
        _wait_statuses(stack, {name: name != "inference" for name in SERVICES}, timeout_s=90)
        stack.deploy_ensemble()
    _wait_statuses(stack, dict.fromkeys(SERVICES, True), timeout_s=240)
    _wait_liveness(stack, "inference", health_pb2.HealthCheckResponse.SERVING)


def _wait_liveness(stack, name, wanted, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        with grpc.insecure_channel(stack.service_target(name)) as channel:
            try:
                status = (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(service="atlasloop.liveness"), timeout=2)
                    .status
                )
            except grpc.RpcError:
                status = None
        if status == wanted:
            return
        time.sleep(0.5)
    assert status == wanted


def test_every_service_serving_once_its_dependencies_answer(full_stack):
    _wait_statuses(full_stack, dict.fromkeys(SERVICES, True))


@pytest.mark.parametrize("component", ["kafka", "postgres", "ray", "s3"])
def test_health_follows_a_dependency_down_and_up(full_stack, component):
    if component == "s3":
        # Tansu keeps its log in S3: stop the broker first so that only S3's absence is tested.
        full_stack.processes.stop("kafka")
        full_stack.processes.stop("s3")
        _wait_statuses(full_stack, {name: not ({"s3", "kafka"} & set(NEEDS[name])) for name in SERVICES})
        full_stack.start_s3()
        full_stack.start_kafka()
        _wait_statuses(full_stack, dict.fromkeys(SERVICES, True), timeout_s=90)
    else:
        _component_restart(full_stack, component)


def _md(stack, role):
    return [("authorization", f"Bearer {stack.token_for(role)}")]


def test_rpc_refused_without_token_and_with_wrong_role(full_stack):
    with grpc.insecure_channel(full_stack.service_target("storage")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        request = storage_pb2.ImportCaseRequest(upload_id="u-1")
        with pytest.raises(grpc.RpcError) as err:
            stub.ImportCase(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            stub.ImportCase(request, metadata=_md(full_stack, "annotator"), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:  # allowed: the handler itself refuses the bogus upload id
            stub.ImportCase(request, metadata=_md(full_stack, "admin"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "upload id" in err.value.details()


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_down_leaves_no_process_and_no_port(full_stack):
    records = [full_stack.processes.record(n) for n in full_stack.processes.names()]
    assert {r.name for r in records} == {"s3", "kafka", "postgres", "ray", "ray-node", *SERVICES}
    full_stack.down()
    assert full_stack.processes.names() == []
    assert [r.name for r in records if group_members(r.pid)] == []
    p = full_stack.ports
    ports = [
        p.s3,
        p.s3_master,
        p.s3_volume,
        p.s3_filer,
        p.s3_admin,
        p.s3_admin_grpc,
        p.kafka,
        p.private_postgres,
        p.ray,
        p.ray_client,
        p.ray_agent,
        p.ray_dashboard,
        p.ray_node_agent,
        p.serve_http,
        p.ray_metrics,
        p.ray_node_metrics,
        *p.services.values(),
        *p.metrics.values(),
    ]
    assert [port for port in ports if _listening(port)] == []
    assert full_stack.down() == []  # idempotent
