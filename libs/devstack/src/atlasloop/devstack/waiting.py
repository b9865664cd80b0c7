"""Waiting for a component to answer its own protocol, with its log's tail when it does not."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from atlasloop.common.readiness import ReadinessCheck


def wait_until(what: str, ready: Callable[[], bool], timeout_s: float, log_file: Path | None = None) -> None:
    """Poll ``ready`` until it returns True; fail with the component's log tail on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not answering yet is expected while starting
            pass
        time.sleep(0.2)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s{tail}")


def answers(check: ReadinessCheck) -> Callable[[], bool]:
    """A readiness check as ``wait_until`` polls it: True once the probe passes (it raises until then)."""

    def ready() -> bool:
        check.probe()
        return True

    return ready
