"""Applying consumed events, idempotently: the event id goes into ``processed_events`` in the same
transaction as its effect, so a redelivered event changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common import tracing
from atlasloop.common.errors import NotReady
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.tracking.models import Case, LabelVersion, ModelSet, ProcessedEvent, Score
from atlasloop.tracking.records import audit, transition

log = logging.getLogger(__name__)
CONSUMER = "tracking"
SYSTEM = "system:events"
REPREDICTABLE = frozenset({"ingested", "predicted", "scored", "queued"})


def apply_event(sessions: sessionmaker[Session], event) -> bool:
    """Apply one event; False when it was applied before."""
    try:
        with sessions.begin() as session:
            session.add(ProcessedEvent(event_id=event.meta.event_id, consumer=CONSUMER))
            session.flush()  # a duplicate id fails here, before any effect
            HANDLERS[type(event)](session, event)
    except IntegrityError:
        return False
    return True


def _case_ingested(session: Session, e: events_pb2.CaseIngested) -> None:
    if session.get(Case, e.case_id) is not None:
        return
    geometry = MessageToDict(e.geometry, preserving_proto_field_name=True)
    case = Case(
        id=e.case_id,
        state="ingested",
        geometry=geometry,
        source=e.ct.key,
        trace_context=tracing.current_headers(),  # the import's trace, continued by this consumer
    )
    session.add(case)
    audit(session, SYSTEM, "case:ingested", e.case_id)
    if e.original_label_version:
        session.add(
            LabelVersion(
                version=e.original_label_version,
                case_id=e.case_id,
                source="original",
                organ_provenance=dict.fromkeys(ORGANS.values(), "original"),
            )
        )
        case.current_label_version = e.original_label_version


def _not_yet(e, what: str) -> None:
    """Events of one case travel on several topics, so one can overtake another (a prediction
    its case's ingestion, a score its prediction). An event waiting for its predecessor is retried
    (the consumer seeks back and tries again) for ``KafkaSettings.not_ready_wait_s``; one whose
    predecessor never comes is dead-lettered with this reason, never dropped, and an admin can
    replay it once the predecessor is there (``atlasloop dead-letters``)."""
    raise NotReady(f"{type(e).__name__} for {e.case_id} arrived before {what}")


def _case_predicted(session: Session, e: events_pb2.CasePredicted) -> None:
    case = session.scalars(select(Case).where(Case.id == e.case_id).with_for_update()).first()
    if case is None:
        _not_yet(e, "the case's ingestion")
        return
    if e.label_version and session.get(LabelVersion, e.label_version) is None:
        session.add(
            LabelVersion(
                version=e.label_version,
                case_id=case.id,
                source="ai",
                model_set=e.model_set,
                round=case.round,
                parent_version=case.ai_label_version,
                organ_provenance=dict.fromkeys(ORGANS.values(), "ai"),
            )
        )
    if case.state in REPREDICTABLE:
        case.ai_label_version = e.label_version
        case.model_set = e.model_set
        human = session.get(LabelVersion, case.current_label_version) if case.current_label_version else None
        if human is None or human.source != "human":
            case.current_label_version = e.label_version
        transition(session, case, "predicted", SYSTEM, model_set=e.model_set)
    else:  # a human holds or has finished the case: keep the new AI version on record only
        audit(session, SYSTEM, "prediction:recorded", case.id, model_set=e.model_set, state=case.state)


def _case_scored(session: Session, e: events_pb2.CaseScored) -> None:
    case = session.scalars(select(Case).where(Case.id == e.case_id).with_for_update()).first()
    if case is None:
        _not_yet(e, "the case's ingestion")
        return
    if (
        case.state in REPREDICTABLE
        and case.model_set != e.model_set
        and not session.scalars(
            select(LabelVersion).where(LabelVersion.case_id == case.id, LabelVersion.model_set == e.model_set)
        ).first()
    ):
        _not_yet(e, "its prediction")
        return
    for organ in e.organs:
        name = ORGANS.get(organ.organ)
        if name is None:
            continue
        score = session.scalars(
            select(Score).where(Score.case_id == case.id, Score.model_set == e.model_set, Score.organ == name)
        ).first()
        if score is None:
            session.add(
                Score(
                    case_id=case.id,
                    model_set=e.model_set,
                    round=case.round,
                    organ=name,
                    attention=organ.attention,
                    heat_sum=organ.heat_sum,
                )
            )
        else:
            score.attention, score.heat_sum = organ.attention, organ.heat_sum
    if case.state == "predicted" and case.model_set == e.model_set:
        case.priority = e.priority
        transition(session, case, "scored", SYSTEM, priority=e.priority)


def _model_published(session: Session, e: events_pb2.ModelPublished) -> None:
    for current in session.scalars(select(ModelSet).where(ModelSet.current)):
        current.current = False
    existing = session.get(ModelSet, e.model_set)
    if existing is None:
        session.add(ModelSet(version=e.model_set, current=True, run_id=e.run_id))
    else:
        existing.current = True
    audit(session, SYSTEM, "model:published", None, model_set=e.model_set, run_id=e.run_id)


HANDLERS: dict[type, Callable[[Session, Any], None]] = {
    events_pb2.CaseIngested: _case_ingested,
    events_pb2.CasePredicted: _case_predicted,
    events_pb2.CaseScored: _case_scored,
    events_pb2.ModelPublished: _model_published,
}
