"""The inference service's operations, free of gRPC: predict a case (streaming each member's
finish and then the durable ensemble outputs), react to events, list model sets.

A case is computed by one caller at a time: the ``case.ingested`` consumer and the re-prediction
sweep may ask for the same case together, and only one of them may compute and announce it (the
other then finds the stored record; predictions are idempotent per case and model set). Several
inference pods each run a sweep; Kafka gives each case's events to one pod, the sweeps may overlap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.inference.repredict import Sweeper
from atlasloop.inference.serving import Serving
from atlasloop.models.records import MemberRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemberFinished:
    member: MemberRef
    seconds: float


@dataclass(frozen=True)
class EnsembleFinished:
    model_set: str
    predictions_prefix: str
    label_version: str
    seconds: float
    repeated: bool  # computed before; nothing was done again


Step = MemberFinished | EnsembleFinished


@dataclass(frozen=True)
class ModelSetInfo:
    version: str
    members: tuple[tuple[MemberRef, str], ...]  # (member, size)
    current: bool


class InferenceCore:
    def __init__(self, serving: Serving, store: ObjectStore, owns_serve_app: bool) -> None:
        self.serving = serving
        self._store = store
        self._owns_serve_app = owns_serve_app
        self._case_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.sweeper: Sweeper | None = None

    def predict(self, case_id: str, model_set: str = "") -> Iterator[Step]:
        if model_set and model_set != self.serving.model_set:
            raise InvalidInput(f"model set {model_set!r} is not the one served ({self.serving.model_set!r})")
        if not case_id or not self._store.exists(layout.meta_key(case_id)):
            raise NotFound(f"case {case_id!r} does not exist")
        for step in self.serving.predict(case_id):
            if step["kind"] == "member":
                architecture, _, version = step["member"].partition("@")
                yield MemberFinished(MemberRef(architecture, version), step["seconds"])
            else:
                yield EnsembleFinished(
                    step["model_set"],
                    step["predictions_prefix"],
                    step["label_version"],
                    step["seconds"],
                    step.get("repeated", False),
                )

    def predict_case(self, case_id: str) -> EnsembleFinished | None:
        """Predict ``case_id`` to the end, one caller at a time per case (events and the sweep)."""
        with self._locks_guard:
            lock = self._case_locks.setdefault(case_id, threading.Lock())
        finished = None
        with lock:
            for step in self.serving.predict(case_id):  # idempotent: a repeated case returns its stored record
                if step["kind"] == "ensemble":
                    finished = step
        if finished is None:
            return None
        log.info(
            "case predicted",
            extra={
                "case_id": case_id,
                "model_set": finished["model_set"],
                "seconds": round(finished["seconds"], 2),
                "repeated": finished.get("repeated", False),
            },
        )
        return EnsembleFinished(
            finished["model_set"],
            finished["predictions_prefix"],
            finished["label_version"],
            finished["seconds"],
            finished.get("repeated", False),
        )

    def on_event(self, event: object, predict_labelled: bool) -> None:
        if isinstance(event, events_pb2.CaseIngested):
            if predict_labelled or not event.original_label_version:
                self.predict_case(event.case_id)
        elif isinstance(event, events_pb2.ModelPublished):
            if self._owns_serve_app:
                # serve the new set (Serve rolls replicas without downtime), then bring every case
                # still labelled by the ensemble up to it, in the background
                self.serving.deploy(event.model_set)
                if self.sweeper is not None:
                    self.sweeper.request()
            else:  # under KubeRay the RayService's serveConfig names the set; the operator rolls it
                log.warning(
                    "model set published; this service does not own the Serve application",
                    extra={"model_set": event.model_set},
                )

    def model_sets(self) -> list[ModelSetInfo]:
        registry = self.serving.registry
        try:
            current = registry.current()
        except NotFound:
            current = ""
        return [
            ModelSetInfo(
                s.version,
                tuple((m, registry.manifest(m.architecture, m.version).size) for m in s.members),
                s.version == current,
            )
            for s in registry.model_sets()
        ]
