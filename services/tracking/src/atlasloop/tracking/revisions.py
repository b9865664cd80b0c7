"""Revisions and reviews.

A revision's corrected label map is first stored through the storage service (which checks it
against the case's grid and the label schema), then diffed against the AI version, then recorded
in one transaction with the lease ending, the case becoming ``revised`` and ``annotation.revised``
in the outbox. If that transaction fails, the stored label version stays unreferenced (immutable,
harmless) and nothing else changes.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from atlasloop.common.domain import ErrorTag, RegionVerdictKind, organ_to_proto
from atlasloop.common.errors import Conflict, InvalidInput, NotFound
from atlasloop.common.events import new_meta
from atlasloop.common.settings import KafkaSettings
from atlasloop.common.storage_client import StorageClient
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS
from atlasloop.imaging.metrics import dice
from atlasloop.method.error_taxonomy import AI_TAGS, ANNOTATOR_TAGS, OrganDiff, diff_volumes
from atlasloop.tracking.models import (
    Agreement,
    Case,
    DoubleRead,
    LabelVersion,
    RegionVerdict,
    Review,
    Revision,
    RevisionTag,
)
from atlasloop.tracking.outbox import add_event
from atlasloop.tracking.queue import held_lease
from atlasloop.tracking.records import audit, locked_case, transition


@dataclass(frozen=True)
class Tag:
    organ: str
    tag: str
    region: dict | None = None


MAX_VERDICTS = 1000


@dataclass(frozen=True)
class Verdict:
    """An annotator's verdict on one attention region (its organ and world box as scoring gave it)."""

    organ: str
    min_mm: tuple[float, ...]
    max_mm: tuple[float, ...]
    verdict: str


def check_verdicts(verdicts: list[Verdict]) -> None:
    if len(verdicts) > MAX_VERDICTS:
        raise InvalidInput(f"at most {MAX_VERDICTS} region verdicts per revision, got {len(verdicts)}")
    for v in verdicts:
        if v.organ not in ORGAN_IDS:
            raise InvalidInput(f"region verdict for unknown organ {v.organ!r}")
        if not RegionVerdictKind.has(v.verdict):
            raise InvalidInput(f"a region verdict is one of {', '.join(RegionVerdictKind)}, got {v.verdict!r}")
        corners = (*v.min_mm, *v.max_mm)
        if len(v.min_mm) != 3 or len(v.max_mm) != 3 or not all(np.isfinite(corners)):
            raise InvalidInput("a region verdict's box needs three finite min_mm and three finite max_mm values")
        if any(lo > hi for lo, hi in zip(v.min_mm, v.max_mm, strict=True)):
            raise InvalidInput("a region verdict's box has min_mm above max_mm")


@dataclass(frozen=True)
class RevisionResult:
    revision_id: str
    label_version: str
    diffs: list[OrganDiff]
    case_id: str = ""


def check_tags(tags: list[Tag], allowed: frozenset[str]) -> None:
    for tag in tags:
        if tag.organ not in ORGAN_IDS:
            raise InvalidInput(f"tag organ {tag.organ!r} is not one of the schema's organs")
        if tag.tag not in allowed:
            raise InvalidInput(f"tag {tag.tag!r} is not in the taxonomy ({', '.join(sorted(allowed))})")


def submit_revision(
    sessions,
    storage: StorageClient,
    kafka: KafkaSettings,
    lease_id: str,
    annotator: str,
    upload_id: str,
    organs: list[str],
    tags: list[Tag],
    seconds: float,
    note: str,
    verdicts: list[Verdict] | None = None,
) -> RevisionResult:
    """A revision of a leased case. ``verdicts`` on the attention regions the annotator was shown
    are stored with it, in the same transaction (a double read stores none: it measures agreement,
    not attention)."""
    verdicts = verdicts or []
    if not np.isfinite(seconds) or seconds < 0:
        raise InvalidInput("seconds_spent must be a finite number >= 0")
    unknown = [o for o in organs if o not in ORGAN_IDS]
    if unknown:
        raise InvalidInput(f"unknown organs {unknown}")
    check_tags(tags, AI_TAGS)
    check_verdicts(verdicts)
    with sessions.begin() as session:  # fail fast, before touching storage
        done = _submitted(session, lease_id, annotator, upload_id)
        if done is not None:  # the same submission again (its answer was lost): what it made
            return done
        lease = held_lease(session, lease_id, annotator)
        case = session.get(Case, lease.case_id)
        case_id, parent, ai_version, round_ = case.id, case.current_label_version, case.ai_label_version, case.round
        double_read = case.state == "approved"
    if not ai_version:
        raise Conflict(f"case {case_id!r} has no AI label version to revise")
    if double_read:
        return _double_read(sessions, storage, lease_id, annotator, upload_id, organs, seconds, note)
    stored = storage.write_human_version(case_id, upload_id, parent, round_)
    ai = storage.load_labels(case_id, ai_version)
    revised = storage.load_labels(case_id, stored.label_version)
    diffs = diff_volumes(ai, revised)
    revision_id = str(uuid.uuid4())
    with sessions.begin() as session:
        lease = held_lease(session, lease_id, annotator)
        case = locked_case(session, case_id)
        provenance = {
            organ: (
                f"human:{revision_id}"
                if organ in organs or any(d.organ == organ and (d.voxels_added or d.voxels_removed) for d in diffs)
                else "ai"
            )
            for organ in ORGANS.values()
        }
        session.add(
            LabelVersion(
                version=stored.label_version,
                case_id=case_id,
                source="human",
                parent_version=parent,
                round=round_,
                object_key=stored.object.key,
                sha256=stored.object.sha256,
                organ_provenance=provenance,
                author=annotator,
            )
        )
        session.flush()
        session.add(
            Revision(
                id=revision_id,
                case_id=case_id,
                lease_id=lease.id,
                annotator=annotator,
                round=round_,
                label_version=stored.label_version,
                parent_version=parent,
                organs=list(organs),
                diffs=[d.as_json() for d in diffs],
                seconds_spent=seconds,
                note=note[:4000],
                upload_id=upload_id,
            )
        )
        session.flush()
        confirmed = {(t.organ, t.tag) for t in tags}
        suggested = {(d.organ, s) for d in diffs for s in d.suggested}
        for organ, tag in sorted(confirmed | suggested):
            region = next((t.region for t in tags if (t.organ, t.tag) == (organ, tag)), None)
            session.add(
                RevisionTag(
                    revision_id=revision_id,
                    organ=organ,
                    tag=tag,
                    region=region,
                    suggested=(organ, tag) in suggested,
                    confirmed=(organ, tag) in confirmed,
                )
            )
        for v in verdicts:
            session.add(
                RegionVerdict(
                    revision_id=revision_id,
                    case_id=case_id,
                    organ=v.organ,
                    min_mm=list(v.min_mm),
                    max_mm=list(v.max_mm),
                    verdict=v.verdict,
                )
            )
        lease.active, lease.ended = False, "submitted"
        case.current_label_version = stored.label_version
        transition(session, case, "revised", annotator, revision_id=revision_id, seconds=seconds)
        event = events_pb2.AnnotationRevised(
            meta=new_meta("tracking"),
            case_id=case_id,
            revision_id=revision_id,
            label_version=stored.label_version,
            organs=[organ_to_proto(o) for o in organs],
            seconds_spent=seconds,
            tags=[
                common_pb2.OrganErrorTag(organ=organ_to_proto(t.organ), tag=ErrorTag(t.tag).to_proto()) for t in tags
            ],
        )
        add_event(session, kafka, event, key=case_id)
    return RevisionResult(revision_id, stored.label_version, diffs, case_id)


def _submitted(session, lease_id: str, annotator: str, upload_id: str) -> RevisionResult | None:
    """The revision this lease already made from this upload, if any. Storage answers the same
    label version for the same upload, so a retried submission is recognised by the pair."""
    revision = session.scalars(
        select(Revision).where(Revision.lease_id == lease_id, Revision.upload_id == upload_id, Revision.upload_id != "")
    ).first()
    if revision is None or revision.annotator != annotator:
        return None
    diffs = [OrganDiff(**d) for d in revision.diffs]
    return RevisionResult(revision.id, revision.label_version, diffs, revision.case_id)


def sampled_for_double_read(case_id: str, fraction: float) -> bool:
    """Deterministic sample: the same case is always in or out for a given fraction."""
    return int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def submit_review(
    sessions,
    kafka: KafkaSettings,
    revision_id: str,
    reviewer: str,
    verdict: str,
    reason: str,
    annotator_errors: list[Tag],
    double_read_fraction: float = 0.0,
) -> str:
    if verdict not in ("approve", "reject"):
        raise InvalidInput("verdict must be approve or reject")
    if verdict == "reject" and not reason.strip():
        raise InvalidInput("a rejection needs a reason")
    check_tags(annotator_errors, ANNOTATOR_TAGS)
    with sessions.begin() as session:
        revision = session.get(Revision, revision_id, with_for_update=True)
        if revision is None:
            raise NotFound(f"revision {revision_id!r} does not exist")
        if revision.review_state != "pending":
            same = session.scalars(
                select(Review).where(
                    Review.revision_id == revision_id, Review.reviewer == reviewer, Review.verdict == verdict
                )
            ).first()
            if same is not None:  # this reviewer's verdict again (its answer was lost): nothing new
                return session.get(Case, revision.case_id).state
            raise Conflict(f"revision {revision_id!r} was already reviewed ({revision.review_state})")
        if revision.annotator == reviewer:
            raise Conflict("annotators do not review their own revisions")
        case = locked_case(session, revision.case_id)
        session.add(
            Review(
                revision_id=revision_id,
                reviewer=reviewer,
                verdict=verdict,
                reason=reason[:4000],
                annotator_errors=[{"organ": t.organ, "tag": t.tag} for t in annotator_errors],
            )
        )
        if verdict == "approve":
            revision.review_state = "approved"
            transition(session, case, "approved", reviewer, revision_id=revision_id)
            add_event(
                session,
                kafka,
                events_pb2.AnnotationApproved(
                    meta=new_meta("tracking"),
                    case_id=case.id,
                    revision_id=revision_id,
                    label_version=revision.label_version,
                    organs=[organ_to_proto(o) for o in revision.organs],
                ),
                key=case.id,
            )
            if sampled_for_double_read(case.id, double_read_fraction):
                session.add(
                    DoubleRead(
                        case_id=case.id,
                        round=revision.round,
                        priority=case.priority,
                        organs=list(revision.organs),
                        first_revision_id=revision.id,
                        first_annotator=revision.annotator,
                    )
                )
                audit(session, reviewer, "double_read:queued", case.id, revision_id=revision.id)
        else:
            revision.review_state = "rejected"
            transition(session, case, "queued", reviewer, revision_id=revision_id, reason=reason[:500])
        return case.state


def _double_read(
    sessions,
    storage: StorageClient,
    lease_id: str,
    annotator: str,
    upload_id: str,
    organs: list[str],
    seconds: float,
    note: str,
) -> RevisionResult:
    """Record a second reading of an approved case and its per-organ agreement with the approved
    label. The dataset's label and the case's state do not change; no loop event is emitted."""
    with sessions.begin() as session:
        lease = held_lease(session, lease_id, annotator)
        case = session.get(Case, lease.case_id)
        entry = session.scalars(
            select(DoubleRead).where(DoubleRead.case_id == case.id, DoubleRead.done.is_(False))
        ).first()
        if entry is None:
            raise Conflict(f"case {case.id!r} has no open double read")
        case_id, approved, ai_version, round_ = case.id, case.current_label_version, case.ai_label_version, case.round
        first_revision = entry.first_revision_id
    stored = storage.write_human_version(case_id, upload_id, ai_version, round_)
    first = storage.load_labels(case_id, approved)
    second = storage.load_labels(case_id, stored.label_version)
    ai = storage.load_labels(case_id, ai_version)
    diffs = diff_volumes(ai, second)
    revision_id = str(uuid.uuid4())
    with sessions.begin() as session:
        lease = held_lease(session, lease_id, annotator)
        entry = session.scalars(
            select(DoubleRead).where(DoubleRead.case_id == case_id, DoubleRead.done.is_(False)).with_for_update()
        ).one()
        session.add(
            LabelVersion(
                version=stored.label_version,
                case_id=case_id,
                source="human",
                parent_version=ai_version,
                round=round_,
                object_key=stored.object.key,
                sha256=stored.object.sha256,
                organ_provenance={"double_read_of": first_revision},
                author=annotator,
            )
        )
        session.flush()
        session.add(
            Revision(
                id=revision_id,
                case_id=case_id,
                lease_id=lease.id,
                annotator=annotator,
                round=round_,
                label_version=stored.label_version,
                parent_version=ai_version,
                organs=list(organs),
                diffs=[d.as_json() for d in diffs],
                seconds_spent=seconds,
                note=note[:4000],
                review_state="none",
                kind="double_read",
                upload_id=upload_id,
            )
        )
        session.flush()
        for label, organ in ORGANS.items():
            a, b = first.array == label, second.array == label
            if a.any() or b.any():
                session.add(
                    Agreement(
                        case_id=case_id,
                        round=round_,
                        first_revision_id=first_revision,
                        second_revision_id=revision_id,
                        organ=organ,
                        dice=dice(a, b),
                    )
                )
        entry.done = True
        lease.active, lease.ended = False, "submitted"
        audit(session, annotator, "double_read:submitted", case_id, revision_id=revision_id)
    return RevisionResult(revision_id, stored.label_version, diffs, case_id)
