"""Health that tells the truth: NOT_SERVING until every readiness check passes.

A daemon thread runs the checks every ``poll_s`` seconds and sets the standard
``grpc.health.v1`` status for the whole server ("") and for each served service, so both
``grpc_health_probe`` and Kubernetes' native gRPC probes see the same answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from atlasloop.common.errors import Fatal
from atlasloop.common.readiness import ReadinessCheck

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Liveness, for kubelet: SERVING while the process serves, whatever its dependencies do (a broker
# outage must make pods unready, not restart them). Readiness uses the overall status "".
LIVENESS = "atlasloop.liveness"


class HealthMonitor:
    """Poll readiness checks and publish the result on a health servicer."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        service_names: Sequence[str],
        checks: Sequence[ReadinessCheck],
        poll_s: float,
    ) -> None:
        self._servicer = servicer
        self._names = ["", *service_names]
        self._checks = list(checks)
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self.failing: dict[str, str] = {c.name: "not checked yet" for c in self._checks}
        self.fatal = False
        self._publish(NOT_SERVING)

    def _publish(self, status: int) -> None:
        for name in self._names:
            self._servicer.set(name, status)

    def check_once(self) -> bool:
        """Run every check once, publish the result, return whether all passed."""
        failing: dict[str, str] = {}
        for check in self._checks:
            try:
                check.probe()
            except Fatal as exc:  # cannot recover in-process: ask to be restarted
                failing[check.name] = f"fatal: {exc}"[:300]
                if not self.fatal:
                    log.error("unrecoverable dependency loss; liveness NOT_SERVING", extra={"check": check.name})
                self.fatal = True
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                failing[check.name] = f"{type(exc).__name__}: {exc}"[:300]
        if failing != self.failing:
            if failing:
                log.warning("not ready", extra={"failing": failing})
            else:
                log.info("all dependencies ready")
        self.failing = failing
        self._publish(NOT_SERVING if failing or self.fatal else SERVING)
        if self.fatal:
            self._servicer.set(LIVENESS, NOT_SERVING)
        return not failing and not self.fatal

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self._poll_s)

    def start(self) -> None:
        self._servicer.set(LIVENESS, SERVING)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._publish(NOT_SERVING)
        self._servicer.set(LIVENESS, NOT_SERVING)
