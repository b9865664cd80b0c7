"""Watching a running stack the way an operator would: Prometheus scrapes of every service's metrics
port (and each Ray node's) in a background thread, and the spans the services wrote
(``tracing.exporter=file`` in the local stack) gathered into one case's trace."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from atlasloop.events.v1 import events_pb2

# The events one case's path through the loop publishes, import to approval; a round adds the model's.
CASE_EVENTS = [
    events_pb2.CaseIngested,
    events_pb2.CasePredicted,
    events_pb2.CaseScored,
    events_pb2.CaseQueued,
    events_pb2.AnnotationRevised,
    events_pb2.AnnotationApproved,
]
ROUND_EVENTS = [*CASE_EVENTS, events_pb2.TrainingCompleted, events_pb2.ModelPublished]

STORAGE = "/atlasloop.storage.v1.StorageService/"
RENDERING = "/atlasloop.rendering.v1.RenderingService/"
TRACKING = "/atlasloop.tracking.v1.TrackingService/"

# Per service, series that must grow while the reduced loop runs: (sample name, labels it must carry).
MOVING: dict[str, list[tuple[str, dict[str, str]]]] = {
    "storage": [
        ("atlasloop_rpc_requests_total", {"method": STORAGE + "ImportCase", "code": "OK"}),
        ("atlasloop_step_duration_seconds_count", {"step": "import"}),
        ("atlasloop_events_published_total", {"topic": "case.ingested"}),
    ],
    "inference": [
        ("atlasloop_events_consumed_total", {"topic": "case.ingested", "outcome": "handled"}),
        ("atlasloop_step_duration_seconds_count", {"step": "prediction"}),
    ],
    "scoring": [
        ("atlasloop_events_consumed_total", {"topic": "case.predicted", "outcome": "handled"}),
        ("atlasloop_step_duration_seconds_count", {"step": "scoring"}),
    ],
    "rendering": [
        ("atlasloop_rpc_requests_total", {"method": RENDERING + "StreamSalientSlices", "code": "OK"}),
        ("atlasloop_step_duration_seconds_count", {"step": "rendering"}),
    ],
    "tracking": [
        ("atlasloop_rpc_requests_total", {"method": TRACKING + "SubmitRevision", "code": "OK"}),
        ("atlasloop_events_consumed_total", {"topic": "case.scored", "outcome": "handled"}),
    ],
    "training": [
        ("atlasloop_step_duration_seconds_count", {"step": "training_run"}),
        ("atlasloop_events_consumed_total", {"topic": "annotation.approved", "outcome": "handled"}),
    ],
}


class Scraper:
    """Scrapes each endpoint every ``every_s`` until stopped. ``first`` is what an endpoint said
    when scraping started (nothing, so zero, for a service started later: its counters start at
    zero with it); ``last`` what it said at the end."""

    def __init__(self, urls: dict[str, str], every_s: float = 5.0) -> None:
        self.urls = urls
        self.every_s = every_s
        self.scrapes = dict.fromkeys(urls, 0)
        self.errors: dict[str, str] = {}
        self._first: dict[str, list] = {}
        self._last: dict[str, list] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._scrape_all()  # the baseline, before anything runs
        self._first = dict(self._last)
        self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(30)
            self._scrape_all()  # one last look, after the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            self._scrape_all()
            self._stop.wait(self.every_s)

    def _scrape_all(self) -> None:
        for name, url in self.urls.items():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
            except OSError as exc:  # not started yet (inference starts after the first training)
                self.errors[name] = str(exc)
                continue
            samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
            self._last[name] = samples
            self.scrapes[name] += 1

    @staticmethod
    def _value(samples: list, sample: str, labels: dict[str, str]) -> float:
        return sum(
            s.value for s in samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def first(self, name: str, sample: str, labels: dict[str, str]) -> float:
        return self._value(self._first.get(name, []), sample, labels)

    def last(self, name: str, sample: str, labels: dict[str, str]) -> float:
        return self._value(self._last.get(name, []), sample, labels)

    def has(self, name: str, sample: str) -> bool:
        return any(s.name == sample for s in self._last.get(name, []))


def spans(traces_dir: Path) -> list[dict]:
    found = []
    for path in sorted(traces_dir.glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


def case_trace(traces_dir: Path, case_id: str) -> list[dict]:
    """Every span of the trace that began with ``case_id``'s import."""
    everything = spans(traces_dir)
    roots = [s for s in everything if s["name"] == "import case" and s["attributes"].get("case_id") == case_id]
    assert len(roots) == 1, f"{len(roots)} import spans of {case_id}"
    return [s for s in everything if s["trace_id"] == roots[0]["trace_id"]]
