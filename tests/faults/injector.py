"""Faults played against a running local stack, one after another, in an order and at moments
drawn from a seed: SIGKILL each service once (and start it again, as Kubernetes would), stop the
broker for 60 s, restart PostgreSQL, and take S3 away for 30 s. Each fault ends with the component
answering its own protocol again before the next one starts; the log says what happened when."""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import asdict, dataclass

from atlasloop.common.service_map import SERVICES
from atlasloop.devstack.stack import Stack

BROKER_DOWN_S = 60.0
S3_DOWN_S = 30.0


@dataclass
class Fault:
    name: str
    at_s: float = 0.0  # since the injector started
    down_s: float = 0.0  # from the signal until the component answered again
    error: str = ""


class Injector:
    """Plays every fault once, in a seeded order with seeded pauses of 2-8 s between them."""

    def __init__(self, stack: Stack, seed: int) -> None:
        self.stack = stack
        self.rng = random.Random(seed)
        names = [f"kill {name}" for name in SERVICES] + ["stop broker", "restart postgres", "stop s3"]
        self.rng.shuffle(names)
        self.faults = [Fault(name) for name in names]
        self._thread = threading.Thread(target=self._play, name="fault-injector", daemon=True)
        self._started = 0.0
        self.done = threading.Event()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the faults did not finish within {timeout_s:.0f} s: {self.report()}")

    def report(self) -> list[dict]:
        return [asdict(f) for f in self.faults]

    def _play(self) -> None:
        try:
            for fault in self.faults:
                time.sleep(self.rng.uniform(2.0, 8.0))
                fault.at_s = round(time.monotonic() - self._started, 1)
                began = time.monotonic()
                try:
                    self._inject(fault.name)
                except Exception as exc:  # noqa: BLE001 - recorded; the test fails on it
                    fault.error = f"{type(exc).__name__}: {exc}"
                fault.down_s = round(time.monotonic() - began, 1)
        finally:
            self.done.set()

    def _inject(self, name: str) -> None:
        stack, processes = self.stack, self.stack.processes
        verb, what = name.split(" ", 1)
        if verb == "kill":
            processes.stop(what, grace_s=0, sig=signal.SIGKILL)
            stack.start_service(what)
            stack.wait_service(what, timeout_s=300)
        elif what == "broker":
            processes.stop("kafka", grace_s=0, sig=signal.SIGKILL)
            time.sleep(BROKER_DOWN_S)
            stack.start_kafka(timeout_s=120)
        elif what == "postgres":
            processes.stop("postgres")  # a fast shutdown: sessions are cut, as in a failover
            stack.start_private_postgres(timeout_s=120)
        elif what == "s3":
            processes.stop("s3", grace_s=0, sig=signal.SIGKILL)
            time.sleep(S3_DOWN_S)
            stack.start_s3(timeout_s=120)
        else:
            raise ValueError(name)
