"""What tracking shows operators beyond its RPCs: the queue's depth and the leases held, read when
Prometheus scrapes; and the case trace a revision or review joins (``atlasloop.common.tracing``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from opentelemetry.trace import Span
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common import metrics, tracing
from atlasloop.tracking.models import Case, Lease, Revision


def queue_depth(sessions: sessionmaker[Session]) -> int:
    """Cases queued for revision and not held by anyone."""
    now = datetime.now(UTC)
    with sessions() as session:
        held = select(Lease.case_id).where(and_(Lease.active, Lease.expires_at >= now))
        query = select(func.count()).select_from(Case).where(Case.state == "queued", Case.id.not_in(held))
        return int(session.scalar(query) or 0)


def active_leases(sessions: sessionmaker[Session]) -> int:
    now = datetime.now(UTC)
    with sessions() as session:
        query = select(func.count()).select_from(Lease).where(Lease.active, Lease.expires_at >= now)
        return int(session.scalar(query) or 0)


def register_gauges(sessions: sessionmaker[Session]) -> None:
    metrics.gauge_from(metrics.QUEUE_DEPTH, lambda: queue_depth(sessions))
    metrics.gauge_from(metrics.ACTIVE_LEASES, lambda: active_leases(sessions))


@contextmanager
def case_span(sessions: sessionmaker[Session], name: str, case_id: str) -> Iterator[Span]:
    """A span in ``case_id``'s trace (begun at its import), linked to the calling RPC's trace."""
    with sessions() as session:
        case = session.get(Case, case_id)
        parent = dict(case.trace_context or {}) if case is not None else {}
    with tracing.span(name, parent or None, attributes={"case_id": case_id}, link_current=True) as span:
        yield span


def case_of_lease(sessions: sessionmaker[Session], lease_id: str) -> str:
    with sessions() as session:
        lease = session.get(Lease, lease_id)
        return lease.case_id if lease is not None else ""


def case_of_revision(sessions: sessionmaker[Session], revision_id: str) -> str:
    with sessions() as session:
        revision = session.get(Revision, revision_id)
        return revision.case_id if revision is not None else ""
