"""The tracking service's operations in plain Python (what the servicer and the tests call)."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from atlasloop.common import case_grants, dead_letters, ids
from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from atlasloop.common.events import EventProducer
from atlasloop.common.storage_client import StorageClient
from atlasloop.tracking import observed, queue, releases, revisions, statistics
from atlasloop.tracking.events_in import apply_event
from atlasloop.tracking.models import (
    AuditEntry,
    Case,
    LabelVersion,
    Lease,
    Project,
    Release,
    ReleaseCase,
    Revision,
)
from atlasloop.tracking.reconcile import Reconciler, Report
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.states import STATES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseView:
    """A case with the source of its current label version ("" when it has none yet)."""

    case: Case
    current_label_source: str


def _with_label_source(query: Select) -> Select:
    return query.add_columns(LabelVersion.source).outerjoin(
        LabelVersion, LabelVersion.version == Case.current_label_version
    )


MAX_PAGE = 500


class TrackingCore:
    def __init__(self, settings: TrackingSettings, engine: Engine, storage: StorageClient) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.storage = storage
        self.reconciler = Reconciler(
            self.sessions,
            storage,
            settings.reconcile_grace_s,
            settings.reconcile_max_announce,
            settings.reconcile_interval_s,
        )

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

    def get_case(self, case_id: str) -> tuple[CaseView, list[AuditEntry]]:
        with self.sessions() as session:
            row = session.execute(_with_label_source(select(Case)).where(Case.id == case_id)).first()
            if row is None:
                raise NotFound(f"case {case_id!r} does not exist")
            history = session.scalars(
                select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.id)
            ).all()
            return CaseView(row[0], row[1] or ""), list(history)

    def list_cases(self, project_id: str, states: list[str], page_size: int, token: str) -> tuple[list[CaseView], str]:
        bad = [s for s in states if s not in STATES]
        if bad:
            raise InvalidInput(f"unknown states {bad}")
        size = min(page_size or 100, MAX_PAGE)
        with self.sessions() as session:
            query = _with_label_source(select(Case)).order_by(Case.id).limit(size + 1)
            if project_id:
                query = query.where(Case.project_id == project_id)
            if states:
                query = query.where(Case.state.in_(states))
            if token:
                query = query.where(Case.id > token)
            cases = [CaseView(case, source or "") for case, source in session.execute(query)]
        more = len(cases) > size
        cases = cases[:size]
        return cases, (cases[-1].case.id if more else "")

    # events, queue, revisions, reviews
    def apply_event(self, event) -> bool:
        return apply_event(self.sessions, event)

    def queue_cases(self, round_: int, cases: list[tuple[str, float, list[str]]], principal: str) -> tuple[int, int]:
        queued, already = queue.queue_cases(self.sessions, self.settings.kafka, round_, cases, principal)
        log.info(
            "cases queued",
            extra={"round": round_, "cases": [c[0] for c in cases], "queued": queued, "already_queued": already},
        )
        return queued, already

    def may_read(self, annotator: str, case_id: str) -> bool:
        """Whether an annotator leases ``case_id`` now or has revised it (what they may read)."""
        now = datetime.now(UTC)
        with self.sessions() as session:
            leased = session.scalar(
                select(Lease.id).where(
                    Lease.case_id == case_id, Lease.annotator == annotator, Lease.active, Lease.expires_at > now
                )
            )
            revised = session.scalar(
                select(Revision.id).where(Revision.case_id == case_id, Revision.annotator == annotator)
            )
            return bool(leased or revised)

    @property
    def grants_on(self) -> bool:
        return self.settings.auth.grant_key is not None

    def grant_case(self, annotator: str, case_id: str) -> tuple[str, datetime]:
        """A case grant (``atlasloop.common.case_grants``) for a case the annotator may read."""
        ids.validate_case_id(case_id)
        if not self.may_read(annotator, case_id):
            raise PermissionDenied(f"{annotator} neither leases nor has revised case {case_id!r}")
        return self.issue_grant(annotator, case_id)

    def issue_grant(self, annotator: str, case_id: str) -> tuple[str, datetime]:
        """The grant itself, for a caller that knows the annotator may read the case (a lease
        just granted)."""
        auth = self.settings.auth
        key = auth.grant_key.get_secret_value().encode() if auth.grant_key else None
        grant = case_grants.issue(key, annotator, case_id, auth.grant_ttl_s)
        return grant, datetime.now(UTC) + timedelta(seconds=auth.grant_ttl_s)

    def next_case(self, annotator: str, project_id: str = "") -> queue.LeaseInfo | None:
        return queue.next_case(
            self.sessions, annotator, self.settings.lease_s, project_id, self.settings.max_active_leases
        )

    def get_lease(self, lease_id: str, principal: str, sees_all: bool) -> queue.LeaseInfo:
        return queue.get(self.sessions, lease_id, principal, sees_all)

    def renew_lease(self, lease_id: str, annotator: str) -> queue.LeaseInfo:
        return queue.renew(self.sessions, lease_id, annotator, self.settings.lease_s, self.settings.max_lease_hold_s)

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
        verdicts: list[revisions.Verdict] | None = None,
    ) -> revisions.RevisionResult:
        with observed.case_span(self.sessions, "revise case", observed.case_of_lease(self.sessions, lease_id)):
            result = revisions.submit_revision(
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
                verdicts,
            )
        log.info(
            "case revised",
            extra={
                "case_id": result.case_id,
                "revision_id": result.revision_id,
                "label_version": result.label_version,
                "organs": organs,
                "seconds": round(seconds, 1),
            },
        )
        return result

    def submit_review(
        self, revision_id: str, reviewer: str, verdict: str, reason: str, annotator_errors: list[revisions.Tag]
    ) -> str:
        case_id = observed.case_of_revision(self.sessions, revision_id)
        with observed.case_span(self.sessions, "review revision", case_id):
            state = revisions.submit_review(
                self.sessions,
                self.settings.kafka,
                revision_id,
                reviewer,
                verdict,
                reason,
                annotator_errors,
                self.settings.double_read_fraction,
            )
        log.info(
            "revision reviewed",
            extra={
                "case_id": case_id,
                "revision_id": revision_id,
                "verdict": verdict,
                "state": state,
            },
        )
        return state

    def list_revisions(self, review_state: str = "", limit: int = 100) -> list[Revision]:
        """Revisions oldest first, only those in ``review_state`` when given (detached)."""
        if not 0 <= limit <= 500:
            raise InvalidInput("limit must be 1..500 (0: 100)")
        query = select(Revision).where(Revision.kind == "revision").order_by(Revision.created_at, Revision.id)
        if review_state:
            query = query.where(Revision.review_state == review_state)
        with self.sessions() as session:
            found = list(session.scalars(query.limit(limit or 100)))
            for revision in found:
                session.expunge(revision)
            return found

    def revision(self, revision_id: str) -> Revision:
        """One revision as recorded (detached from its session)."""
        if not revision_id or len(revision_id) > 64:
            raise InvalidInput("revision_id must be 1..64 characters")
        with self.sessions() as session:
            revision = session.get(Revision, revision_id)
            if revision is None:
                raise NotFound(f"revision {revision_id!r} does not exist")
            session.expunge(revision)
            return revision

    def reconcile(self) -> Report:
        return self.reconciler.sweep()

    def list_dead_letters(self) -> list[dead_letters.DeadLetter]:
        return dead_letters.read(self.settings.kafka)

    def replay_dead_letter(self, letter_id: str, principal: str) -> dead_letters.DeadLetter:
        producer = EventProducer(self.settings.kafka, "tracking-replay")
        try:
            letter = dead_letters.replay(self.settings.kafka, producer, letter_id, principal)
        finally:
            producer.close()
        log.warning(
            "dead letter replayed",
            extra={"letter": letter_id, "topic": letter.topic, "event_id": letter.event_id, "by": principal},
        )
        return letter

    def statistics(self, project_id: str = "") -> statistics.Statistics:
        return statistics.statistics(self.sessions, project_id)

    # dataset releases
    def create_release(
        self, name: str, project_id: str, description: str, principal: str
    ) -> tuple[Release, list[ReleaseCase], list[str]]:
        release, cases, unlabelled = releases.create(self.sessions, name, project_id, description, principal)
        log.info("release created", extra={"release": name, "cases": len(cases), "unlabelled": len(unlabelled)})
        return release, cases, unlabelled

    def list_releases(self, project_id: str) -> list[tuple[Release, int]]:
        return releases.listed(self.sessions, project_id)

    def get_release(self, name: str) -> tuple[Release, list[ReleaseCase], list[releases.Change]]:
        return releases.get(self.sessions, name)
