"""Dataset releases: a frozen choice of one label version per case, and what changed since the
last one.

The label a case is released with is the best by provenance, as in the published method's
releases: the latest *approved* human revision (a pending or rejected one never), then the
original labels the case was imported with, then the ensemble's latest pseudo-label. A case with
none of these is left out and named. The rows are written once, in one transaction with the audit
entry, and never change (a PostgreSQL trigger refuses UPDATE and DELETE), so the changelog of a
release against the one before it can be computed from the rows at any later time and always says
the same.

The release only names label versions; the files are written by whoever reads it
(``atlasloop release``), from storage, in the format they want.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound
from atlasloop.imaging.labels import ORGANS
from atlasloop.tracking.models import Case, LabelVersion, Project, Release, ReleaseCase, Revision, RevisionTag
from atlasloop.tracking.records import audit

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Change:
    case_id: str
    kind: str  # added | changed | removed
    before: ReleaseCase | None
    after: ReleaseCase | None
    tags: list[tuple[str, str]] = field(default_factory=list)  # (organ, tag) confirmed on the revision


def _best_labels(session: Session, project_id: str) -> tuple[list[ReleaseCase], list[str]]:
    """Each case's best label by provenance, and the cases that have none."""
    query = select(Case).order_by(Case.id)
    if project_id:
        query = query.where(Case.project_id == project_id)
    cases = list(session.scalars(query))
    ids = [c.id for c in cases]
    approved: dict[str, Revision] = {}
    for revision in session.scalars(
        select(Revision)
        .where(Revision.case_id.in_(ids), Revision.kind == "revision", Revision.review_state == "approved")
        .order_by(Revision.created_at, Revision.id)
    ):
        approved[revision.case_id] = revision  # the latest wins
    versions: dict[str, LabelVersion] = {}
    originals: dict[str, LabelVersion] = {}
    for version in session.scalars(
        select(LabelVersion).where(LabelVersion.case_id.in_(ids)).order_by(LabelVersion.created_at)
    ):
        versions[version.version] = version
        if version.source == "original":
            originals[version.case_id] = version
    chosen: list[ReleaseCase] = []
    unlabelled: list[str] = []
    for case in cases:
        if case.id in approved:
            revision = approved[case.id]
            parent = versions.get(revision.parent_version)
            chosen.append(
                ReleaseCase(
                    case_id=case.id,
                    label_version=revision.label_version,
                    source="human",
                    model_set=parent.model_set if parent is not None else "",
                    revision_id=revision.id,
                    round=revision.round,
                )
            )
        elif case.id in originals:
            original = originals[case.id]
            chosen.append(
                ReleaseCase(case_id=case.id, label_version=original.version, source="original", model_set="", round=0)
            )
        elif case.ai_label_version:
            ai = versions.get(case.ai_label_version)
            chosen.append(
                ReleaseCase(
                    case_id=case.id,
                    label_version=case.ai_label_version,
                    source="ai",
                    model_set=ai.model_set if ai is not None else case.model_set,
                    round=ai.round if ai is not None else case.round,
                )
            )
        else:
            unlabelled.append(case.id)
    return chosen, unlabelled


def create(
    sessions: sessionmaker, name: str, project_id: str, description: str, principal: str
) -> tuple[Release, list[ReleaseCase], list[str]]:
    if not NAME.fullmatch(name or ""):
        raise InvalidInput("release name: 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    try:
        with sessions.begin() as session:
            if project_id and session.get(Project, project_id) is None:
                raise NotFound(f"project {project_id!r} does not exist")
            if session.scalar(select(Release.id).where(Release.name == name)) is not None:
                raise AlreadyExists(f"release {name!r} exists; releases never change: choose another name")
            chosen, unlabelled = _best_labels(session, project_id)
            if not chosen:
                raise InvalidInput("no case has a label yet: nothing to release")
            previous = session.scalars(
                select(Release).where(Release.project_id == project_id).order_by(Release.id.desc()).limit(1)
            ).first()
            release = Release(
                name=name,
                project_id=project_id,
                description=description[:2000],
                previous=previous.name if previous is not None else "",
                created_by=principal,
                classes={"0": "background", **{str(value): organ for value, organ in sorted(ORGANS.items())}},
            )
            session.add(release)
            session.flush()
            for row in chosen:
                row.release_id = release.id
            session.add_all(chosen)
            audit(
                session,
                principal,
                "release:created",
                name=name,
                project_id=project_id,
                cases=len(chosen),
                previous=release.previous,
                unlabelled=len(unlabelled),
            )
    except IntegrityError:  # created by someone else between the check and the commit
        raise AlreadyExists(f"release {name!r} exists; releases never change: choose another name") from None
    return release, chosen, unlabelled


def listed(sessions: sessionmaker, project_id: str) -> list[tuple[Release, int]]:
    with sessions() as session:
        query = select(Release).order_by(Release.id)
        if project_id:
            query = query.where(Release.project_id == project_id)
        releases = list(session.scalars(query))
        query_counts = (
            select(ReleaseCase.release_id, func.count())
            .where(ReleaseCase.release_id.in_([r.id for r in releases]))
            .group_by(ReleaseCase.release_id)
        )
        counts: dict[int, int] = {release_id: n for release_id, n in session.execute(query_counts)}
        return [(r, counts.get(r.id, 0)) for r in releases]


def get(sessions: sessionmaker, name: str) -> tuple[Release, list[ReleaseCase], list[Change]]:
    with sessions() as session:
        release = session.scalars(select(Release).where(Release.name == name)).first()
        if release is None:
            raise NotFound(f"release {name!r} does not exist")
        cases = _cases(session, release.id)
        before: list[ReleaseCase] = []
        if release.previous:
            previous = session.scalars(select(Release).where(Release.name == release.previous)).one()
            before = _cases(session, previous.id)
        return release, cases, _changes(session, before, cases)


def _cases(session: Session, release_id: int) -> list[ReleaseCase]:
    return list(
        session.scalars(select(ReleaseCase).where(ReleaseCase.release_id == release_id).order_by(ReleaseCase.case_id))
    )


def _changes(session: Session, before: list[ReleaseCase], after: list[ReleaseCase]) -> list[Change]:
    old = {c.case_id: c for c in before}
    new = {c.case_id: c for c in after}
    revised = [c.revision_id for c in after if c.revision_id]
    tags: dict[str, list[tuple[str, str]]] = {}
    for tag in session.scalars(
        select(RevisionTag)
        .where(RevisionTag.revision_id.in_(revised), RevisionTag.confirmed)
        .order_by(RevisionTag.organ, RevisionTag.tag)
    ):
        tags.setdefault(tag.revision_id, []).append((tag.organ, tag.tag))
    changes = []
    for case_id in sorted(old.keys() | new.keys()):
        was, now = old.get(case_id), new.get(case_id)
        if now is None:
            changes.append(Change(case_id, "removed", was, None))
        elif was is None or was.label_version != now.label_version:
            kind = "added" if was is None else "changed"
            changes.append(Change(case_id, kind, was, now, tags.get(now.revision_id, [])))
    return changes
