"""gRPC server bootstrap shared by every service.

A service describes itself with a :class:`ServiceSpec` (the proto services it serves, a function
registering its servicers, its readiness checks, start and stop hooks); :func:`run_service` does
the rest: JSON logging, metrics and tracing, interceptors (observation, errors, auth), the health
service driven by the readiness checks, reflection, message-size limits, graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from atlasloop.common import metrics, tracing
from atlasloop.common.auth import build_authenticator, role_policy
from atlasloop.common.health import HealthMonitor
from atlasloop.common.interceptors import OPEN_PREFIXES, AuthInterceptor, ErrorInterceptor, ObservingInterceptor
from atlasloop.common.jsonlog import configure_logging
from atlasloop.common.readiness import ReadinessCheck
from atlasloop.common.settings import ServiceSettings
from atlasloop.common.stream_limits import StreamLimitInterceptor, StreamLimits
from atlasloop.common.tls import add_port

log = logging.getLogger(__name__)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class ServiceSpec:
    """What a service process serves and needs."""

    name: str
    services: Sequence[ServiceDescriptor]
    register: Callable[[grpc.Server], None]
    checks: Sequence[ReadinessCheck] = ()
    on_start: Sequence[Callable[[], None]] = field(default_factory=list)
    on_stop: Sequence[Callable[[], None]] = field(default_factory=list)


class OnceHealthServicer(health.HealthServicer):  # type: ignore[misc,unused-ignore]  # grpc_health ships no types
    """``Check`` as usual; ``Watch`` answers the current status and ends, so an open watch never
    holds a worker thread (clients watch again; Kubernetes and grpcurl use ``Check``)."""

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)

    def Watch(self, request: Any, context: grpc.ServicerContext, send_response_callback: Any = None) -> Any:
        yield self.Check(request, context)


class GrpcService:
    """A started (or startable) gRPC server for one :class:`ServiceSpec`."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.limits = StreamLimits(
            settings.max_open_streams, settings.max_streams_per_principal, settings.stream_idle_s, settings.stream_max_s
        )
        interceptors = [
            ObservingInterceptor(),
            ErrorInterceptor(),
            AuthInterceptor(
                build_authenticator(settings.auth),
                role_policy(spec.services),
                settings.auth.grant_key.get_secret_value().encode() if settings.auth.grant_key else None,
            ),
            StreamLimitInterceptor(self.limits, OPEN_PREFIXES),
        ]
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=spec.name),
            interceptors=interceptors,
            options=options,
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,  # beyond: RESOURCE_EXHAUSTED, not a queue
        )
        spec.register(self.server)
        self.health = OnceHealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Probes (kubelet) on a port of their own, served by threads of their own: a busy or
        # flooded work pool never fails them.
        self.probe_server: grpc.Server | None = None
        if settings.probe_port:
            self.probe_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{spec.name}-probe"),
                maximum_concurrent_rpcs=16,
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.probe_server)
            if self.probe_server.add_insecure_port(f"{settings.host}:{settings.probe_port}") == 0:
                raise OSError(f"cannot listen on {settings.host}:{settings.probe_port}")
        names = [s.full_name for s in spec.services]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME, "grpc.health.v1.Health"], self.server)
        self.monitor = HealthMonitor(self.health, names, spec.checks, settings.health_poll_s)
        self.port = add_port(self.server, f"{settings.host}:{settings.port}", settings.tls)
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.host}:{settings.port}")

    def start(self) -> None:
        self.server.start()
        if self.probe_server is not None:
            self.probe_server.start()
        self.limits.start()
        self.monitor.start()
        for hook in self.spec.on_start:
            hook()
        log.info(
            "serving",
            extra={
                "host": self.settings.host,
                "port": self.port,
                "tls": self.settings.tls.enabled,
                "mutual_tls": self.settings.tls.require_client_cert,
            },
        )

    def stop(self, grace_s: float = 5.0) -> None:
        self.monitor.stop()
        for hook in self.spec.on_stop:
            hook()
        self.server.stop(grace_s).wait()
        if self.probe_server is not None:
            self.probe_server.stop(0).wait()
        self.limits.stop()
        log.info("stopped")


def run_service(build: Callable[[SettingsT], ServiceSpec], settings: SettingsT) -> None:
    """Run a service until SIGTERM or SIGINT, then drain and stop."""
    name = settings_service_name(settings)
    configure_logging(name, settings.log_level)
    tracing.configure(name, settings.tracing)
    metrics.configure(name, settings.host, settings.metrics_port)
    service = GrpcService(build(settings), settings)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    stopping.wait()
    service.stop()
    tracing.shutdown()


def settings_service_name(settings: ServiceSettings) -> str:
    prefix = settings.model_config.get("env_prefix", "") or ""
    return prefix.removeprefix("ATLASLOOP_").strip("_").lower() or "atlasloop"
