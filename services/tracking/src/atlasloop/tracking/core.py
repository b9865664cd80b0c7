"""The tracking service's operations in plain Python (what the servicer and the tests call)."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound
from atlasloop.common.storage_client import StorageClient
from atlasloop.tracking import queue, revisions, statistics
from atlasloop.tracking.events_in import apply_event
from atlasloop.tracking.models import AuditEntry, Case, Project
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.states import STATES

MAX_PAGE = 500


class TrackingCore:
    def __init__(self, settings: TrackingSettings, engine: Engine, storage: StorageClient) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.storage = storage

    # projects and cases
    def create_project(self, name: str, description: str, principal: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,199}", name or ""):
            raise InvalidInput("project name: 1-200 letters, digits, spaces, '.', '_' or '-'")
        project_id = f"prj-{uuid.uuid4().hex[:10]}"
        try:
            with self.sessions.begin() as session:
                session.add(Project(id=project_id, name=name, description=description[:2000]))
                session.add(AuditEntry(principal=principal, action="project:created", detail={"name": name}))
        except IntegrityError:
            raise AlreadyExists(f"a project named {name!r} exists") from None
        return project_id

    def get_case(self, case_id: str) -> tuple[Case, list[AuditEntry]]:
        with self.sessions() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"case {case_id!r} does not exist")
            history = session.scalars(
                select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.id)
            ).all()
            return case, list(history)

    def list_cases(self, project_id: str, states: list[str], page_size: int, token: str) -> tuple[list[Case], str]:
        bad = [s for s in states if s not in STATES]
        if bad:
            raise InvalidInput(f"unknown states {bad}")
        size = min(page_size or 100, MAX_PAGE)
        with self.sessions() as session:
            query = select(Case).order_by(Case.id).limit(size + 1)
            if project_id:
                query = query.where(Case.project_id == project_id)
            if states:
                query = query.where(Case.state.in_(states))
            if token:
                query = query.where(Case.id > token)
            cases = list(session.scalars(query))
        more = len(cases) > size
        cases = cases[:size]
        return cases, (cases[-1].id if more else "")

    # events, queue, revisions, reviews
    def apply_event(self, event) -> bool:
        return apply_event(self.sessions, event)

    def queue_cases(self, round_: int, cases: list[tuple[str, float, list[str]]], principal: str) -> tuple[int, int]:
        return queue.queue_cases(self.sessions, self.settings.kafka, round_, cases, principal)

    def next_case(self, annotator: str, project_id: str = "") -> queue.LeaseInfo | None:
        return queue.next_case(self.sessions, annotator, self.settings.lease_s, project_id)

    def renew_lease(self, lease_id: str, annotator: str) -> queue.LeaseInfo:
        return queue.renew(self.sessions, lease_id, annotator, self.settings.lease_s)

    def release_lease(self, lease_id: str, annotator: str) -> None:
        queue.release(self.sessions, lease_id, annotator)

    def submit_revision(
        self,
        lease_id: str,
        annotator: str,
        upload_id: str,
        organs: list[str],
        tags: list[revisions.Tag],
        seconds: float,
        note: str,
    ) -> revisions.RevisionResult:
        return revisions.submit_revision(
            self.sessions,
            self.storage,
            self.settings.kafka,
            lease_id,
            annotator,
            upload_id,
            organs,
            tags,
            seconds,
            note,
        )

    def submit_review(
        self, revision_id: str, reviewer: str, verdict: str, reason: str, annotator_errors: list[revisions.Tag]
    ) -> str:
        return revisions.submit_review(
            self.sessions,
            self.settings.kafka,
            revision_id,
            reviewer,
            verdict,
            reason,
            annotator_errors,
            self.settings.double_read_fraction,
        )

    def statistics(self, project_id: str = "") -> statistics.Statistics:
        return statistics.statistics(self.sessions, project_id)
