"""One unit of work a case waits on, observed both ways: a span in the case's trace and a sample of
``atlasloop_step_duration_seconds{step}`` (``atlasloop.common.tracing``, ``atlasloop.common.metrics``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span

from atlasloop.common import metrics, tracing


@contextmanager
def step(name: str, span_name: str, parent: Mapping[str, str] | None = None, **attributes: Any) -> Iterator[Span]:
    """Time ``name`` (import, prediction, scoring, rendering) and trace it as ``span_name``, a child
    of the current span or of ``parent`` (W3C headers) when given."""
    started = time.perf_counter()
    with tracing.span(span_name, parent, attributes=attributes) as span:
        yield span
    metrics.step(name, time.perf_counter() - started)
