"""The inference service's operations, free of gRPC: predict a case (streaming each member's
finish and then the durable ensemble outputs), react to events, list model sets.

The ensemble itself runs on the Ray cluster (``serve_app``); this process reaches it over the
network (``EnsembleClient``) and never imports Ray. A case is computed by one caller at a time: the
``case.ingested`` consumer and the re-prediction sweep may ask for the same case together, and only
one of them may compute and announce it (the other then finds the stored record; predictions are
idempotent per case and model set). Several inference pods each run a sweep; Kafka gives each
case's events to one pod, the sweeps may overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from atlasloop.common import layout, observe, tracing
from atlasloop.common.errors import NotFound
from atlasloop.common.keyed_locks import KeyedLocks
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.inference.ensemble_client import EnsembleClient
from atlasloop.inference.repredict import Sweeper
from atlasloop.inference.v1 import ensemble_pb2
from atlasloop.models.records import MemberRef
from atlasloop.models.registry import ModelRegistry

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
    def __init__(self, ensemble: EnsembleClient, store: ObjectStore) -> None:
        self.ensemble = ensemble
        self.registry = ModelRegistry(store)
        self._store = store
        self.case_locks = KeyedLocks()
        self.sweeper: Sweeper | None = None

    def predict(self, case_id: str, model_set: str = "") -> Iterator[Step]:
        """Progress of one case; a set named must exist (the ensemble serves any registered set)."""
        if not case_id or not self._store.exists(layout.meta_key(case_id)):
            raise NotFound(f"case {case_id!r} does not exist")
        if model_set:
            self.registry.model_set(model_set)  # NotFound for an unknown set
        with observe.step("prediction", "predict case", case_id=case_id):
            for message in self.ensemble.run(case_id, model_set, tracing.current_headers()):
                yield _step(message)

    def predict_case(self, case_id: str) -> EnsembleFinished | None:
        """Predict ``case_id`` to the end, one caller at a time per case (events and the sweep)."""
        finished = None
        with (
            self.case_locks.hold(case_id),
            observe.step("prediction", "predict case", self._case_trace(case_id), case_id=case_id),
        ):
            # idempotent: a repeated case returns its stored record
            for message in self.ensemble.run(case_id, context=tracing.current_headers()):
                step = _step(message)
                if isinstance(step, EnsembleFinished):
                    finished = step
        if finished is not None:
            log.info(
                "case predicted",
                extra={
                    "case_id": case_id,
                    "model_set": finished.model_set,
                    "seconds": round(finished.seconds, 2),
                    "repeated": finished.repeated,
                },
            )
        return finished

    def _case_trace(self, case_id: str) -> dict[str, str] | None:
        """The case's trace (begun at its import) for work that arrives without one (the sweep);
        None when the caller is in a trace already (an event's consumer)."""
        if tracing.in_trace():
            return None
        try:
            return dict(self._store.get_json(layout.meta_key(case_id)).get("trace_context") or {}) or None
        except NotFound:
            return None

    def on_event(self, event: object, predict_labelled: bool) -> None:
        if isinstance(event, events_pb2.CaseIngested):
            if predict_labelled or not event.original_label_version:
                self.predict_case(event.case_id)
        elif isinstance(event, events_pb2.ModelPublished):
            # the Serve replicas follow the registry's current set by themselves; bring every case
            # still labelled by the ensemble up to it, in the background
            log.info("model set published; re-predicting AI-labelled cases", extra={"model_set": event.model_set})
            if self.sweeper is not None:
                self.sweeper.request()

    def model_sets(self) -> list[ModelSetInfo]:
        try:
            current = self.registry.current()
        except NotFound:
            current = ""
        return [
            ModelSetInfo(
                s.version,
                tuple((m, self.registry.manifest(m.architecture, m.version).size) for m in s.members),
                s.version == current,
            )
            for s in self.registry.model_sets()
        ]


def _step(message: ensemble_pb2.RunResponse) -> Step:
    if message.HasField("member_finished"):
        member = message.member_finished.member
        return MemberFinished(MemberRef(member.architecture, member.version), message.member_finished.seconds)
    done = message.ensemble_finished
    return EnsembleFinished(done.model_set, done.predictions_prefix, done.label_version, done.seconds, message.repeated)
