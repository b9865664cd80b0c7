"""gRPC adapter of the tracking service: protobuf in, :class:`TrackingCore` calls, protobuf out."""

from __future__ import annotations

from typing import cast

from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp

from atlasloop.common import case_grants, dead_letters
from atlasloop.common.auth import current_principal
from atlasloop.common.domain import (
    CaseState,
    ErrorTag,
    LabelSource,
    RegionVerdictKind,
    ReviewState,
    ReviewVerdict,
    Role,
    organ_from_proto,
    organ_to_proto,
)
from atlasloop.common.errors import InvalidInput, PermissionDenied
from atlasloop.common.v1 import common_pb2
from atlasloop.tracking.core import CaseView, TrackingCore
from atlasloop.tracking.models import Release, ReleaseCase
from atlasloop.tracking.queue import LeaseInfo
from atlasloop.tracking.releases import Change
from atlasloop.tracking.revisions import Tag, Verdict
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc


def _stamp(moment) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _tags(messages) -> list[Tag]:
    tags = []
    for message in messages:
        if not message.tag:
            raise InvalidInput("every tag needs an error type from the taxonomy")
        tag = ErrorTag.from_proto(message.tag)
        region = None
        if message.HasField("region"):
            region = {"min_voxel": list(message.region.min_voxel), "max_voxel": list(message.region.max_voxel)}
        tags.append(Tag(organ_from_proto(message.organ), tag, region))
    return tags


def _lease(info: LeaseInfo) -> tracking_pb2.Lease:
    return tracking_pb2.Lease(
        lease_id=info.lease_id, case_id=info.case_id, annotator=info.annotator, expires_at=_stamp(info.expires_at)
    )


def _summary(view: CaseView) -> tracking_pb2.CaseSummary:
    case = view.case
    geometry = ParseDict(case.geometry or {}, common_pb2.Geometry(), ignore_unknown_fields=True)
    source = LabelSource(view.current_label_source).to_proto() if view.current_label_source else None
    return tracking_pb2.CaseSummary(
        case_id=case.id,
        project_id=case.project_id or "",
        state=CaseState(case.state).to_proto(),
        priority=case.priority,
        current_label_version=case.current_label_version,
        geometry=geometry,
        current_label_source=source,
        ai_label_version=case.ai_label_version,
        model_set=case.model_set,
    )


class TrackingServiceServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, core: TrackingCore) -> None:
        self._core = core

    def CreateProject(self, request, context):
        project_id = self._core.create_project(request.name, request.description, current_principal().name)
        return tracking_pb2.CreateProjectResponse(project_id=project_id)

    def ListCases(self, request, context):
        states = [CaseState.from_proto(s) for s in request.states]
        cases, token = self._core.list_cases(request.project_id, states, request.page_size, request.page_token)
        return tracking_pb2.ListCasesResponse(cases=[_summary(c) for c in cases], next_page_token=token)

    def GetCase(self, request, context):
        principal = current_principal()
        if not principal.roles & case_grants.UNRESTRICTED and not self._core.may_read(principal.name, request.case_id):
            raise PermissionDenied(f"{principal.name} may read only the cases they lease or have revised")
        case, history = self._core.get_case(request.case_id)
        return tracking_pb2.GetCaseResponse(
            case=_summary(case),
            history=[
                tracking_pb2.HistoryEntry(action=h.action, principal=h.principal, at=_stamp(h.at)) for h in history
            ],
        )

    def QueueCases(self, request, context):
        cases = [(c.case_id, c.priority, [organ_from_proto(o) for o in c.organs]) for c in request.cases]
        queued, already = self._core.queue_cases(request.round, cases, current_principal().name)
        return tracking_pb2.QueueCasesResponse(queued=queued, already_queued=already)

    def NextCase(self, request, context):
        annotator = current_principal().name
        info = self._core.next_case(annotator, request.project_id)
        if info is None:
            return tracking_pb2.NextCaseResponse()
        return tracking_pb2.NextCaseResponse(
            lease=_lease(info),
            organs=[organ_to_proto(o) for o in info.organs],
            label_version=info.label_version,
            double_read=info.double_read,
            case_grant=self._core.issue_grant(annotator, info.case_id)[0] if self._core.grants_on else "",
        )

    def GrantCase(self, request, context):
        grant, expires = self._core.grant_case(current_principal().name, request.case_id)
        return tracking_pb2.GrantCaseResponse(case_grant=grant, expires_at=_stamp(expires))

    def GetLease(self, request, context):
        principal = current_principal()
        info = self._core.get_lease(
            request.lease_id, principal.name, sees_all=bool(principal.roles & {Role.REVIEWER, Role.ADMIN})
        )
        return tracking_pb2.GetLeaseResponse(
            lease=_lease(info),
            organs=[organ_to_proto(o) for o in info.organs],
            label_version=info.label_version,
            double_read=info.double_read,
            active=info.active,
        )

    def RenewLease(self, request, context):
        return tracking_pb2.RenewLeaseResponse(
            lease=_lease(self._core.renew_lease(request.lease_id, current_principal().name))
        )

    def ReleaseLease(self, request, context):
        self._core.release_lease(request.lease_id, current_principal().name)
        return tracking_pb2.ReleaseLeaseResponse()

    def SubmitRevision(self, request, context):
        result = self._core.submit_revision(
            request.lease_id,
            current_principal().name,
            request.upload_id,
            [organ_from_proto(o) for o in request.organs],
            _tags(request.tags),
            request.seconds_spent,
            request.note,
            _verdicts(request.region_verdicts),
        )
        return tracking_pb2.SubmitRevisionResponse(
            revision_id=result.revision_id,
            label_version=result.label_version,
            diffs=[
                tracking_pb2.OrganDiff(
                    organ=organ_to_proto(d.organ),
                    voxels_added=d.voxels_added,
                    voxels_removed=d.voxels_removed,
                    ml_added=d.ml_added,
                    ml_removed=d.ml_removed,
                    dice=d.dice,
                )
                for d in result.diffs
            ],
            suggested_tags=[
                common_pb2.OrganErrorTag(organ=organ_to_proto(d.organ), tag=ErrorTag(s).to_proto())
                for d in result.diffs
                for s in d.suggested
            ],
        )

    def SubmitReview(self, request, context):
        if not request.verdict:
            raise InvalidInput("verdict must be APPROVE or REJECT")
        state = self._core.submit_review(
            request.revision_id,
            current_principal().name,
            ReviewVerdict.from_proto(request.verdict),
            request.reason,
            _tags(request.annotator_errors),
        )
        return tracking_pb2.SubmitReviewResponse(state=CaseState(state).to_proto())

    def GetRevision(self, request, context):
        return _revision(self._core.revision(request.revision_id))

    def ListRevisions(self, request, context):
        states = {s.to_proto(): s.value for s in ReviewState}
        if request.review_state and request.review_state not in states:
            raise InvalidInput(f"unknown review state {request.review_state}")
        found = self._core.list_revisions(states.get(request.review_state, ""), request.limit)
        return tracking_pb2.ListRevisionsResponse(
            revisions=[
                tracking_pb2.RevisionSummary(
                    revision=_revision(r),
                    parent_version=r.parent_version,
                    seconds_spent=r.seconds_spent,
                    created_at=_stamp(r.created_at),
                )
                for r in found
            ]
        )

    def ListDeadLetters(self, request, context):
        letters = self._core.list_dead_letters()
        return tracking_pb2.ListDeadLettersResponse(
            letters=[_letter(letter) for letter in letters if request.include_replayed or not letter.replayed_by]
        )

    def ReplayDeadLetter(self, request, context):
        letter = self._core.replay_dead_letter(request.id, current_principal().name)
        return tracking_pb2.ReplayDeadLetterResponse(letter=_letter(letter))

    def Reconcile(self, request, context):
        report = self._core.reconcile()
        return tracking_pb2.ReconcileResponse(
            storage_cases=report.storage_cases,
            announced_missing=report.announced_missing,
            announced_stuck=report.announced_stuck,
            orphans=report.orphans,
            deferred=report.deferred,
        )

    def GetStatistics(self, request, context):
        stats = self._core.statistics(request.project_id)
        return tracking_pb2.GetStatisticsResponse(
            organs=[
                tracking_pb2.OrganRoundStatistics(
                    round=r.round,
                    organ=organ_to_proto(r.organ),
                    cases_revised=r.cases_revised,
                    voxels_changed=r.voxels_changed,
                    mean_dice=r.mean_dice,
                    tag_counts=r.tag_counts,
                    double_reads=r.double_reads,
                    double_read_dice=r.double_read_dice,
                    regions_fixed=r.regions_fixed,
                    regions_not_an_error=r.regions_not_an_error,
                )
                for r in stats.organs
            ],
            minutes_per_round=stats.minutes_per_round,
            revisions_per_annotator=stats.revisions_per_annotator,
        )

    def CreateRelease(self, request, context):
        release, cases, unlabelled = self._core.create_release(
            request.name, request.project_id, request.description, current_principal().name
        )
        return tracking_pb2.CreateReleaseResponse(
            release=_release(release, len(cases)),
            cases=[_release_case(c) for c in cases],
            unlabelled=unlabelled,
        )

    def ListReleases(self, request, context):
        return tracking_pb2.ListReleasesResponse(
            releases=[_release(r, count) for r, count in self._core.list_releases(request.project_id)]
        )

    def GetRelease(self, request, context):
        release, cases, changes = self._core.get_release(request.name)
        return tracking_pb2.GetReleaseResponse(
            release=_release(release, len(cases)),
            cases=[_release_case(c) for c in cases],
            changes=[_change(c) for c in changes],
        )


def _release(release: Release, case_count: int) -> tracking_pb2.Release:
    return tracking_pb2.Release(
        name=release.name,
        project_id=release.project_id,
        description=release.description,
        previous=release.previous,
        created_by=release.created_by,
        created_at=_stamp(release.created_at),
        case_count=case_count,
        classes={int(value): name for value, name in release.classes.items()},
    )


def _release_case(case: ReleaseCase) -> tracking_pb2.ReleaseCase:
    return tracking_pb2.ReleaseCase(
        case_id=case.case_id,
        label_version=case.label_version,
        source=LabelSource(case.source).to_proto(),
        model_set=case.model_set,
        revision_id=case.revision_id,
        round=case.round,
    )


def _change(change: Change) -> tracking_pb2.ReleaseChange:
    kinds = {
        "added": tracking_pb2.RELEASE_CHANGE_KIND_ADDED,
        "changed": tracking_pb2.RELEASE_CHANGE_KIND_CHANGED,
        "removed": tracking_pb2.RELEASE_CHANGE_KIND_REMOVED,
    }
    message = tracking_pb2.ReleaseChange(
        case_id=change.case_id,
        kind=kinds[change.kind],
        tags=[
            common_pb2.OrganErrorTag(organ=organ_to_proto(organ), tag=ErrorTag(tag).to_proto())
            for organ, tag in change.tags
        ],
    )
    if change.before is not None:
        message.from_label_version = change.before.label_version
        message.from_source = LabelSource(change.before.source).to_proto()
    if change.after is not None:
        message.to_label_version = change.after.label_version
        message.to_source = LabelSource(change.after.source).to_proto()
    return message


def _verdicts(messages) -> list[Verdict]:
    verdicts = []
    for m in messages:
        if not m.verdict:
            raise InvalidInput("every region verdict needs a verdict: FIXED or NOT_AN_ERROR")
        kind = RegionVerdictKind.from_proto(m.verdict)
        verdicts.append(Verdict(organ_from_proto(m.organ), tuple(m.box.min_mm), tuple(m.box.max_mm), kind.value))
    return verdicts


def _revision(revision) -> tracking_pb2.GetRevisionResponse:
    return tracking_pb2.GetRevisionResponse(
        revision_id=revision.id,
        case_id=revision.case_id,
        label_version=revision.label_version,
        organs=[organ_to_proto(o) for o in revision.organs],
        review_state=_review_state(revision.review_state),
        annotator=revision.annotator,
    )


def _review_state(value: str) -> tracking_pb2.ReviewState:
    """A double read (state "none") is never reviewed: unspecified."""
    states = {s.value: s for s in ReviewState}
    proto = states[value].to_proto() if value in states else tracking_pb2.REVIEW_STATE_UNSPECIFIED
    return cast("tracking_pb2.ReviewState", proto)


def _letter(letter: dead_letters.DeadLetter) -> tracking_pb2.DeadLetter:
    return tracking_pb2.DeadLetter(
        id=letter.id,
        topic=letter.topic,
        key=letter.key,
        consumer_group=letter.group,
        reason=letter.reason,
        attempts=letter.attempts,
        failed_at=letter.at,
        event_type=letter.event_type,
        event_id=letter.event_id,
        replayed_by=letter.replayed_by,
        replayed_at=letter.replayed_at,
    )
