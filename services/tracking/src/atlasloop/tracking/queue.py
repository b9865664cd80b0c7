"""The review queue with leases.

``next_case`` takes the highest-priority case of the current round that is queued, or leased
under an expired lease, locking its row with ``FOR UPDATE SKIP LOCKED`` so concurrent annotators
pass over each other instead of waiting; a partial unique index allows at most one active lease
per case, so even a bug above this layer cannot hand one case to two people. (On SQLite, the
embedded single-machine default, writes are serialised by the database itself.)
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common.errors import Conflict, InvalidInput, NotFound, PermissionDenied, TooLarge
from atlasloop.common.events import new_meta
from atlasloop.common.ids import validate_case_id
from atlasloop.common.settings import KafkaSettings
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.tracking.models import Case, DoubleRead, Lease, QueueEntry
from atlasloop.tracking.outbox import add_event
from atlasloop.tracking.records import audit, locked_case, transition


@dataclass(frozen=True)
class LeaseInfo:
    lease_id: str
    case_id: str
    annotator: str
    expires_at: datetime
    organs: list[str]
    label_version: str
    double_read: bool = False
    active: bool = True


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def queue_cases(
    sessions: sessionmaker[Session],
    kafka: KafkaSettings,
    round_: int,
    cases: list[tuple[str, float, list[str]]],
    principal: str,
) -> tuple[int, int]:
    if round_ < 1:
        raise InvalidInput("round must be >= 1")
    for case_id, priority, organs in cases:  # every field before any case is touched
        validate_case_id(case_id)
        if not math.isfinite(priority):
            raise InvalidInput(f"priority of {case_id} must be a finite number, not {priority}")
        unknown = [o for o in organs if o not in ORGAN_IDS]
        if unknown:
            raise InvalidInput(f"unknown organs {unknown}")
    queued = already = 0
    with sessions.begin() as session:
        for case_id, priority, organs in cases:
            case = locked_case(session, case_id)
            existing = session.scalars(
                select(QueueEntry).where(QueueEntry.case_id == case_id, QueueEntry.round == round_)
            ).first()
            if existing is not None:
                already += 1
                continue
            transition(session, case, "queued", principal, round=round_, priority=priority)
            case.round, case.priority = round_, priority
            session.add(QueueEntry(case_id=case_id, round=round_, priority=priority, organs=list(organs)))
            add_event(
                session,
                kafka,
                events_pb2.CaseQueued(meta=new_meta("tracking"), case_id=case_id, round=round_, priority=priority),
                key=case_id,
            )
            queued += 1
    return queued, already


def next_case(
    sessions: sessionmaker[Session], annotator: str, lease_s: int, project_id: str = "", max_active: int = 3
) -> LeaseInfo | None:
    """A lease on the next case for ``annotator``, who may hold at most ``max_active`` unexpired
    leases (so one person cannot take the whole queue)."""
    now = _now()
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":  # one NextCase per annotator at a time
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:who))"), {"who": f"lease:{annotator}"})
        held = session.scalar(
            select(func.count())
            .select_from(Lease)
            .where(Lease.annotator == annotator, Lease.active, Lease.expires_at > now)
        )
        if held is not None and held >= max_active:
            raise TooLarge(
                f"{annotator} holds {held} active leases (the limit is {max_active}): submit or release one first"
            )
        case, entry = _expired(session, now, project_id) or _queued(session, project_id) or (None, None)
        if case is None:
            return _double_read(session, annotator, lease_s, now, project_id)
        if case.state == "leased":  # take over an expired lease
            for old in session.scalars(select(Lease).where(Lease.case_id == case.id, Lease.active)):
                old.active, old.ended = False, "expired"
            transition(session, case, "queued", "system:lease-expiry")
            session.flush()
        assert entry is not None  # found together with its case
        lease = Lease(
            id=str(uuid.uuid4()),
            case_id=case.id,
            annotator=annotator,
            acquired_at=now,
            expires_at=now + timedelta(seconds=lease_s),
            active=True,
            label_version=case.current_label_version,
            organs=list(entry.organs),
        )
        session.add(lease)
        transition(session, case, "leased", annotator, lease_id=lease.id)
        return _info(lease)


def _queued(session: Session, project_id: str):
    """The highest-priority queued case of its round, walking the priority index, skipping locked rows."""
    query = (
        select(Case, QueueEntry)
        .join(Case, and_(Case.id == QueueEntry.case_id, Case.round == QueueEntry.round))
        .where(Case.state == "queued")
        .order_by(QueueEntry.priority.desc(), QueueEntry.case_id)
        .limit(1)
        .with_for_update(of=Case, skip_locked=True)
    )
    if project_id:
        query = query.where(Case.project_id == project_id)
    return session.execute(query).first()


def _double_read(session: Session, annotator: str, lease_s: int, now: datetime, project_id: str) -> LeaseInfo | None:
    """An approved case sampled for a second reading, never offered to its first annotator.

    The case keeps its state; the lease (one holder at a time, as for revisions) is the only hold.
    The second reader starts from the AI label, so the reading is independent of the first.
    """
    query = (
        select(Case, DoubleRead)
        .join(DoubleRead, DoubleRead.case_id == Case.id)
        .outerjoin(Lease, and_(Lease.case_id == Case.id, Lease.active))
        .where(
            DoubleRead.done.is_(False),
            DoubleRead.first_annotator != annotator,
            Case.state == "approved",
            or_(Lease.id.is_(None), Lease.expires_at < now),
        )
        .order_by(DoubleRead.priority.desc(), Case.id)
        .limit(1)
        .with_for_update(of=Case, skip_locked=True)
    )
    if project_id:
        query = query.where(Case.project_id == project_id)
    row = session.execute(query).first()
    if row is None:
        return None
    case, entry = row
    for old in session.scalars(select(Lease).where(Lease.case_id == case.id, Lease.active)):
        old.active, old.ended = False, "expired"
    session.flush()
    lease = Lease(
        id=str(uuid.uuid4()),
        case_id=case.id,
        annotator=annotator,
        acquired_at=now,
        expires_at=now + timedelta(seconds=lease_s),
        active=True,
        label_version=case.ai_label_version,
        organs=list(entry.organs),
        double_read=True,
    )
    session.add(lease)
    audit(session, annotator, "double_read:leased", case.id, lease_id=lease.id)
    return _info(lease)


def _expired(session: Session, now: datetime, project_id: str):
    """A case whose lease ran out (found through the partial index on active leases' expiry)."""
    query = (
        select(Case, QueueEntry)
        .join(Lease, and_(Lease.case_id == Case.id, Lease.active))
        .join(QueueEntry, and_(QueueEntry.case_id == Case.id, QueueEntry.round == Case.round))
        .where(Lease.expires_at < now, Case.state == "leased")
        .order_by(Lease.expires_at)
        .limit(1)
        .with_for_update(of=Case, skip_locked=True)
    )
    if project_id:
        query = query.where(Case.project_id == project_id)
    return session.execute(query).first()


def _info(lease: Lease) -> LeaseInfo:
    return LeaseInfo(
        lease.id,
        lease.case_id,
        lease.annotator,
        lease.expires_at,
        list(lease.organs),
        lease.label_version,
        lease.double_read,
        lease.active,
    )


def get(sessions: sessionmaker[Session], lease_id: str, principal: str, sees_all: bool) -> LeaseInfo:
    """A lease as it was granted; annotators see only their own, reviewers and admins any."""
    with sessions() as session:
        lease = session.get(Lease, lease_id)
        if lease is None or (lease.annotator != principal and not sees_all):
            raise NotFound(f"lease {lease_id[:80]!r} does not exist or is not yours")
        return _info(lease)


def held_lease(session: Session, lease_id: str, annotator: str) -> Lease:
    """The caller's active, unexpired lease, locked."""
    lease = session.scalars(select(Lease).where(Lease.id == lease_id).with_for_update()).first()
    if lease is None:
        raise NotFound(f"lease {lease_id!r} does not exist")
    if lease.annotator != annotator:
        raise PermissionDenied("this lease belongs to another annotator")
    if not lease.active or _aware(lease.expires_at) <= _now():
        raise Conflict("the lease has ended or expired; take the case again with NextCase")
    return lease


def renew(
    sessions: sessionmaker[Session], lease_id: str, annotator: str, lease_s: int, max_hold_s: int = 8 * 3600
) -> LeaseInfo:
    """Extend a held lease by ``lease_s``, never past ``max_hold_s`` after it was taken: a case
    cannot be held for ever by renewing."""
    with sessions.begin() as session:
        lease = held_lease(session, lease_id, annotator)
        until = _aware(lease.acquired_at) + timedelta(seconds=max_hold_s)
        if _aware(lease.expires_at) >= until:
            raise Conflict(
                f"lease {lease_id} has been held for the most a lease may be ({max_hold_s // 60} minutes): "
                "submit the revision or release the case"
            )
        lease.expires_at = min(_now() + timedelta(seconds=lease_s), until)
        audit(session, annotator, "lease:renewed", lease.case_id, lease_id=lease.id)
        return _info(lease)


def release(sessions: sessionmaker[Session], lease_id: str, annotator: str) -> None:
    with sessions.begin() as session:
        lease = held_lease(session, lease_id, annotator)
        lease.active, lease.ended = False, "released"
        transition(session, locked_case(session, lease.case_id), "queued", annotator, lease_id=lease.id)
