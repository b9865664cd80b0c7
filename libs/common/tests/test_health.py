"""Health follows the readiness checks, in both directions."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2

from atlasloop.common.health import HealthMonitor
from atlasloop.common.readiness import ReadinessCheck


def _status(servicer, name=""):
    return servicer.Check(health_pb2.HealthCheckRequest(service=name), None).status


def test_not_serving_until_every_check_passes_and_back():
    up = {"bucket": False, "broker": True}

    def probe(name):
        def run():
            if not up[name]:
                raise ConnectionError(f"{name} down")

        return run

    servicer = health.HealthServicer()
    monitor = HealthMonitor(servicer, ["atlasloop.x.v1.X"], [ReadinessCheck(n, probe(n)) for n in up], 1.0)
    assert _status(servicer) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert monitor.check_once() is False
    assert "bucket" in monitor.failing and "broker" not in monitor.failing
    up["bucket"] = True
    assert monitor.check_once() is True
    assert _status(servicer) == health_pb2.HealthCheckResponse.SERVING
    assert _status(servicer, "atlasloop.x.v1.X") == health_pb2.HealthCheckResponse.SERVING
    up["broker"] = False
    monitor.check_once()
    assert _status(servicer, "atlasloop.x.v1.X") == health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_fatal_loss_turns_liveness_off_for_good():
    from atlasloop.common.errors import Fatal
    from atlasloop.common.health import LIVENESS

    state = {"fatal": False}

    def probe():
        if state["fatal"]:
            raise Fatal("cluster gone")

    servicer = health.HealthServicer()
    monitor = HealthMonitor(servicer, [], [ReadinessCheck("ray-driver", probe)], 1.0)
    servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    assert monitor.check_once() is True
    state["fatal"] = True
    monitor.check_once()
    state["fatal"] = False
    monitor.check_once()  # the dependency answers again, but this process cannot use it: stay dead
    assert _status(servicer, LIVENESS) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _status(servicer) == health_pb2.HealthCheckResponse.NOT_SERVING
