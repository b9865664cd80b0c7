"""An ``annotation.approved`` event is a hint, not a fact: the broker cannot say who published it.
Before an approval counts, tracking (the system of record) is asked for the revision; only a
revision it answers as approved counts, with the case, label version and organs tracking recorded
(not the event's). Anything else is refused and logged, and changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from atlasloop.common.errors import NotReady
from atlasloop.common.tls import ClientTls, open_channel
from atlasloop.common.tracing import traced_channel
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verified:
    revision_id: str
    case_id: str
    label_version: str
    organs: list[str]


class ApprovalCheck:
    def __init__(self, target: str, token: str, timeout_s: float = 10.0, tls: ClientTls | None = None) -> None:
        self._channel = open_channel(target, tls)
        self._stub = tracking_pb2_grpc.TrackingServiceStub(traced_channel(self._channel))
        self._metadata = [("authorization", f"Bearer {token}")]
        self._timeout_s = timeout_s

    def verify(self, event: events_pb2.AnnotationApproved) -> Verified | None:
        """Tracking's record of an approved revision; None (logged) when the event does not match one."""
        try:
            revision = self._stub.GetRevision(
                tracking_pb2.GetRevisionRequest(revision_id=event.revision_id),
                metadata=self._metadata,
                timeout=self._timeout_s,
            )
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                _refused(event, f"tracking has no revision {event.revision_id!r}")
                return None
            raise NotReady(f"tracking cannot confirm approvals now: {exc.code().name} {exc.details()}") from None
        if revision.review_state != tracking_pb2.REVIEW_STATE_APPROVED:
            _refused(event, "tracking has not approved it")
            return None
        if (revision.case_id, revision.label_version) != (event.case_id, event.label_version):
            _refused(event, f"tracking recorded {revision.case_id}/{revision.label_version}")
            return None
        return Verified(
            revision.revision_id,
            revision.case_id,
            revision.label_version,
            [ORGANS[o] for o in revision.organs if o in ORGANS],
        )

    def close(self) -> None:
        self._channel.close()


def _refused(event: events_pb2.AnnotationApproved, why: str) -> None:
    log.warning(
        "approval refused",
        extra={
            "revision_id": event.revision_id,
            "case_id": event.case_id,
            "label_version": event.label_version,
            "producer": event.meta.producer,
            "reason": why,
        },
    )
