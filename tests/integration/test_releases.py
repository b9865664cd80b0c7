"""Dataset releases in tracking, on the real PostgreSQL: the best label by provenance, a changelog
that names exactly what changed, and a release that nobody can change or reuse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from atlasloop.common import events
from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.tracking.models import AuditEntry, LabelVersion, Lease, Release, ReleaseCase, Revision, RevisionTag

from .test_tracking import _core

pytestmark = pytest.mark.integration


def _case(core, case_id, original="", ai=""):
    core.apply_event(
        events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id=case_id, original_label_version=original)
    )
    if ai:
        core.apply_event(
            events_pb2.CasePredicted(
                meta=events.new_meta("inference"), case_id=case_id, model_set="ms-1", label_version=ai
            )
        )


def _revision(core, case_id, version, state, tags=(), parent="", minutes=0):
    """A revision as tracking records one (its lease, label version, tags), in review ``state``."""
    with core.sessions.begin() as session:
        lease = Lease(
            id=uuid.uuid4().hex,
            case_id=case_id,
            annotator="ann",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            active=False,
            ended="submitted",
        )
        session.add(lease)
        session.add(LabelVersion(version=version, case_id=case_id, source="human", parent_version=parent))
        session.flush()
        revision = Revision(
            id=f"rev-{version}",
            case_id=case_id,
            lease_id=lease.id,
            annotator="ann",
            round=1,
            label_version=version,
            parent_version=parent,
            seconds_spent=60.0,
            review_state=state,
            created_at=datetime.now(UTC) + timedelta(minutes=minutes),
        )
        session.add(revision)
        session.flush()
        for organ, tag in tags:
            session.add(RevisionTag(revision_id=revision.id, organ=organ, tag=tag, confirmed=True))
        session.add(RevisionTag(revision_id=revision.id, organ="liver", tag="boundary", suggested=True))
    return f"rev-{version}"


def _by_case(cases):
    return {c.case_id: (c.label_version, c.source, c.model_set, c.revision_id) for c in cases}


def test_a_release_takes_the_best_label_and_its_changelog_names_exactly_what_changed(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique)
    _case(core, "c-ai", ai="ai-1")
    _case(core, "c-orig", original="orig-2", ai="ai-2")
    _case(core, "c-human", ai="ai-3")
    _case(core, "c-pending", ai="ai-4")
    _case(core, "c-none")
    rev3 = _revision(core, "c-human", "h-3", "approved", [("liver", "missed_region")], parent="ai-3")
    _revision(core, "c-pending", "h-4", "pending", parent="ai-4")
    _revision(core, "c-pending", "h-4b", "rejected", parent="ai-4", minutes=1)

    release, cases, unlabelled = core.create_release("atlas-1.0", "", "first", "admin")
    assert unlabelled == ["c-none"] and release.previous == ""
    assert _by_case(cases) == {
        "c-ai": ("ai-1", "ai", "ms-1", ""),
        "c-orig": ("orig-2", "original", "", ""),  # an original beats the ensemble
        "c-human": ("h-3", "human", "ms-1", rev3),  # an approved revision beats both
        "c-pending": ("ai-4", "ai", "ms-1", ""),  # pending and rejected revisions never count
    }
    assert release.classes == {"0": "background", **{str(v): name for v, name in ORGANS.items()}}

    # between the releases: c-ai and c-pending are revised and approved, c-human again; a new case
    rev1 = _revision(core, "c-ai", "h-1", "approved", [("spleen", "leakage"), ("liver", "missed_region")], "ai-1")
    rev4 = _revision(core, "c-pending", "h-4c", "approved", [], "ai-4", minutes=2)
    rev3b = _revision(core, "c-human", "h-3b", "approved", [("aorta", "fragment")], "h-3", minutes=3)
    _revision(core, "c-orig", "h-2", "pending", parent="orig-2")  # not approved: no change
    _case(core, "c-new", ai="ai-5")
    second, cases2, _ = core.create_release("atlas-1.1", "", "second", "admin")
    assert second.previous == "atlas-1.0" and len(cases2) == 5

    _, _, changes = core.get_release("atlas-1.1")
    got = {(c.case_id, c.kind, c.before and c.before.label_version, c.after and c.after.label_version) for c in changes}
    assert got == {
        ("c-ai", "changed", "ai-1", "h-1"),
        ("c-pending", "changed", "ai-4", "h-4c"),
        ("c-human", "changed", "h-3", "h-3b"),
        ("c-new", "added", None, "ai-5"),
    }
    tags = {c.case_id: c.tags for c in changes}
    assert tags["c-ai"] == [("liver", "missed_region"), ("spleen", "leakage")]  # confirmed only, not suggested
    assert tags["c-human"] == [("aorta", "fragment")] and tags["c-pending"] == []
    assert {c.after.revision_id for c in changes if c.after and c.after.revision_id} == {rev1, rev4, rev3b}
    _, first_cases, first_changes = core.get_release("atlas-1.0")
    assert {c.kind for c in first_changes} == {"added"} and _by_case(first_cases) == _by_case(cases)
    assert [(r.name, n) for r, n in core.list_releases("")] == [("atlas-1.0", 4), ("atlas-1.1", 5)]


def test_a_release_never_changes_and_a_refused_one_leaves_nothing(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique)
    with pytest.raises(InvalidInput, match="nothing to release"):
        core.create_release("empty", "", "", "admin")  # no case has a label
    _case(core, "c-1", ai="ai-1")
    for bad in ("", "../up", "-x", "a" * 101, "sp ace"):
        with pytest.raises(InvalidInput, match="release name"):
            core.create_release(bad, "", "", "admin")
    with pytest.raises(NotFound, match="project"):
        core.create_release("r1", "prj-missing", "", "admin")
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Release)) == 0
        assert session.scalar(select(func.count()).select_from(ReleaseCase)) == 0
        assert not session.scalars(select(AuditEntry).where(AuditEntry.action == "release:created")).all()

    core.create_release("r1", "", "", "admin")
    _revision(core, "c-1", "h-1", "approved", parent="ai-1")
    with pytest.raises(AlreadyExists, match="never change"):
        core.create_release("r1", "", "", "admin")
    _, cases, _ = core.get_release("r1")
    assert [c.label_version for c in cases] == ["ai-1"]  # still what it froze
    with core.engine.connect() as connection:  # not even the tables' owner can change it
        for statement in (
            "UPDATE release_cases SET label_version = 'h-1'",
            "DELETE FROM release_cases",
            "UPDATE releases SET name = 'r2'",
        ):
            with pytest.raises(DBAPIError, match="immutable"):
                connection.execute(text(statement))
            connection.rollback()
    with pytest.raises(NotFound):
        core.get_release("r9")
