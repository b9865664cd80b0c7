"""Triggers: approved revisions arriving as events, counted against the policy in settings.

An ``annotation.approved`` counts only once tracking confirms the revision is approved
(``approvals``); it is recorded once per revision id (a redelivery changes nothing); then,
if any rule of the policy holds for the revisions no run has used yet (and the active run is not
already training on), a run is requested. While a run is active the request joins its single
follow-up. A schedule, when set, requests a run every ``schedule_s`` while anything is pending.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from atlasloop.common.approvals import ApprovalCheck
from atlasloop.events.v1 import events_pb2
from atlasloop.training.ledger import Approval
from atlasloop.training.scheduler import Scheduler
from atlasloop.training.settings import TriggerPolicy

log = logging.getLogger(__name__)


def due(policy: TriggerPolicy, pending: dict[str, Approval]) -> str:
    """The first rule that holds, as the run's trigger text; empty when none does."""
    if policy.approved_threshold and len(pending) >= policy.approved_threshold:
        return f"approved>={policy.approved_threshold}"
    counts = Counter(organ for approval in pending.values() for organ in approval.organs)
    for organ, threshold in sorted(policy.organ_thresholds.items()):
        if counts[organ] >= threshold:
            return f"organ:{organ}>={threshold}"
    return ""


class Triggers:
    def __init__(self, scheduler: Scheduler, policy: TriggerPolicy, check: ApprovalCheck) -> None:
        self.scheduler = scheduler
        self.policy = policy
        self.check = check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def new_pending(self) -> dict[str, Approval]:
        claimed = self.scheduler.claimed()
        return {k: v for k, v in self.scheduler.ledger.pending().items() if k not in claimed}

    def on_approved(self, event: events_pb2.AnnotationApproved) -> None:
        approved = self.check.verify(event)  # tracking's record, not the event's word
        if approved is None:
            return
        ledger = self.scheduler.ledger
        if not ledger.record_approval(approved.revision_id, approved.case_id, approved.label_version, approved.organs):
            return  # redelivered
        pending = self.new_pending()
        if trigger := due(self.policy, pending):
            run = self.scheduler.request(trigger, claims=pending)
            log.info("training triggered", extra={"trigger": trigger, "run_id": run.run_id})

    def start(self) -> None:
        if self.policy.schedule_s:
            self._thread = threading.Thread(target=self._schedule, name="training-schedule", daemon=True)
            self._thread.start()

    def _schedule(self) -> None:
        while not self._stop.wait(self.policy.schedule_s):
            if (pending := self.new_pending()) and not self.scheduler.busy():
                self.scheduler.request(f"schedule:{self.policy.schedule_s:g}s", claims=pending)

    def stop(self) -> None:
        self._stop.set()
