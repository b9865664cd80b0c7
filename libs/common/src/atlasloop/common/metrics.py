"""Prometheus metrics of a service process, served on its metrics port (``/metrics``).

Every series carries the ``service`` label. What is measured and where:

- ``atlasloop_rpc_requests_total{method, code}`` and ``atlasloop_rpc_duration_seconds{method}``:
  every RPC, by the server interceptor (refusals included);
- ``atlasloop_events_published_total{topic}``, ``atlasloop_events_consumed_total{topic, outcome}``
  (``handled``, ``retried``, ``skipped``) and ``atlasloop_event_consumer_lag{topic}`` (messages
  behind the end of each topic, from librdkafka's statistics): the event plumbing;
- ``atlasloop_step_duration_seconds{step}``: the work a case waits on (``import``, ``prediction``,
  ``scoring``, ``rendering``, ``training_run``);
- ``atlasloop_queue_depth`` and ``atlasloop_active_leases``: tracking's queue, read when scraped;
- ``atlasloop_reconciled_cases_total{outcome}`` (``announced_missing``, ``announced_stuck``,
  ``orphan``): what tracking's reconciliation sweep repaired or found.

Ray's own metrics come from each Ray node's metrics export port, not from here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_service = "atlasloop"
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

RPCS = Counter("atlasloop_rpc_requests", "RPCs answered, by method and status code.", ["service", "method", "code"])
RPC_SECONDS = Histogram(
    "atlasloop_rpc_duration_seconds",
    "RPC latency (streams: until the last message).",
    ["service", "method"],
    buckets=SECONDS,
)
EVENTS_PUBLISHED = Counter("atlasloop_events_published", "Events the broker acknowledged.", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "atlasloop_events_consumed",
    "Events consumed: handled, retried (handler failed) or skipped.",
    ["service", "topic", "outcome"],
)
CONSUMER_LAG = Gauge("atlasloop_event_consumer_lag", "Messages behind the end of the topic.", ["service", "topic"])
STEP_SECONDS = Histogram(
    "atlasloop_step_duration_seconds", "Durations of the work a case waits on.", ["service", "step"], buckets=SECONDS
)
QUEUE_DEPTH = Gauge("atlasloop_queue_depth", "Cases queued for revision and not yet taken.", ["service"])
RECONCILED = Counter(
    "atlasloop_reconciled_cases",
    "Cases tracking's reconciliation sweep announced again or found orphaned.",
    ["service", "outcome"],
)
ACTIVE_LEASES = Gauge("atlasloop_active_leases", "Cases an annotator holds now.", ["service"])


def configure(service: str, host: str, port: int) -> None:
    """Name this process's series and serve ``/metrics`` on ``host:port`` (0: no endpoint)."""
    global _service
    _service = service
    if port:
        start_http_server(port, addr=host)
        log.info("metrics", extra={"host": host, "port": port})


def rpc(method: str, code: str, seconds: float) -> None:
    RPCS.labels(_service, method, code).inc()
    RPC_SECONDS.labels(_service, method).observe(seconds)


def published(topic: str) -> None:
    EVENTS_PUBLISHED.labels(_service, topic).inc()


def consumed(topic: str, outcome: str) -> None:
    EVENTS_CONSUMED.labels(_service, topic, outcome).inc()


def lag(topic: str, messages: int) -> None:
    CONSUMER_LAG.labels(_service, topic).set(messages)


KAFKA_STATS_INTERVAL_MS = 5000


def record_kafka_lag(stats_json: str) -> None:
    """librdkafka's statistics callback: the consumer's lag per topic (summed over its partitions)."""
    try:
        stats = json.loads(stats_json)
    except ValueError:
        return
    for topic, info in (stats.get("topics") or {}).items():
        lags = [p.get("consumer_lag", -1) for key, p in (info.get("partitions") or {}).items() if key != "-1"]
        known = [n for n in lags if isinstance(n, int) and n >= 0]
        if known:
            lag(topic, sum(known))


def reconciled(outcome: str, cases: int) -> None:
    RECONCILED.labels(_service, outcome).inc(cases)


def step(name: str, seconds: float) -> None:
    STEP_SECONDS.labels(_service, name).observe(seconds)


def gauge_from(gauge: Gauge, read: Callable[[], float]) -> None:
    """``gauge`` reads ``read()`` when scraped; NaN when it cannot (the scrape still answers)."""

    def safe() -> float:
        try:
            return float(read())
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metric could not be read", exc_info=True)
            return math.nan

    gauge.labels(_service).set_function(safe)
