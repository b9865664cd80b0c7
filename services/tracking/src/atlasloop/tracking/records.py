"""Helpers every tracking operation shares: case lookup with a row lock, state transitions that
write the audit log, and the audit log itself."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atlasloop.common.errors import NotFound
from atlasloop.tracking import states
from atlasloop.tracking.models import AuditEntry, Case


def audit(session: Session, principal: str, action: str, case_id: str | None = None, **detail: object) -> None:
    session.add(AuditEntry(principal=principal, case_id=case_id, action=action, detail=dict(detail)))


def locked_case(session: Session, case_id: str) -> Case:
    case = session.scalars(select(Case).where(Case.id == case_id).with_for_update()).first()
    if case is None:
        raise NotFound(f"case {case_id!r} does not exist")
    return case


def transition(session: Session, case: Case, wanted: str, principal: str, **detail: object) -> None:
    states.check(case.state, wanted)
    audit(session, principal, f"state:{case.state}->{wanted}", case.id, **detail)
    case.state = wanted
