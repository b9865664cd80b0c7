"""Runs, one at a time, each a Ray job: start a requested run, queue one follow-up behind it,
follow the job, re-attach after a restart, cancel.

A request while a run is active queues one follow-up run; further requests join that follow-up
(their trigger is appended) instead of piling up. The job records its own steps in the run record;
this side reads the record (progress for WatchRun) and the job's status. When the job ends without
recording an outcome (killed, out of memory, the cluster replaced) the run is FAILED with the job's
reason. After a restart of this service, a run whose job still runs is followed again, one whose
job died is failed with its reason, and one whose candidate set had already become current is
completed as PUBLISHED and announced again (consumers are idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from atlasloop.common import metrics
from atlasloop.common.domain import RunState
from atlasloop.common.errors import AtlasError, Conflict
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.outages import outage
from atlasloop.events.v1 import events_pb2
from atlasloop.models.registry import ModelRegistry
from atlasloop.training.jobs import RunJobs
from atlasloop.training.ledger import Ledger
from atlasloop.training.progress import ProgressBoard
from atlasloop.training.publish import Publisher, candidate_set_version
from atlasloop.training.recording import RunLog
from atlasloop.training.runs import RunRecord, RunStore, new_run_id
from atlasloop.training.settings import TrainingSettings

log = logging.getLogger(__name__)
OUTAGE_RETRY_S = 2.0
OUTAGE_GIVE_UP_S = 900.0  # then the run is left to recover() after the next restart


class Scheduler:
    def __init__(
        self,
        settings: TrainingSettings,
        store: ObjectStore,
        producer: EventProducer,
        jobs: RunJobs,
        poll_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.runs = RunStore(store)
        self.ledger = Ledger(store)
        self.log = RunLog(self.runs, producer)
        self.progress = ProgressBoard(self.runs.get)
        self.registry = ModelRegistry(store)
        self.publisher = Publisher(store, self.registry, producer)
        self._jobs = jobs
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._active = ""
        self._follow_up = ""
        self._cancelled: dict[str, str] = {}  # run id -> who cancelled it
        # run id -> the approvals pending when it was requested: it will train on them, so they
        # are not new for the next trigger even before its job records what it chose
        self._claims: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- requests ----

    def request(
        self,
        trigger: str,
        from_originals: bool = False,
        overrides: dict[str, Any] | None = None,
        claims: Iterable[str] = (),
    ) -> RunRecord:
        """Start a run now, or queue one follow-up behind the active run (joined by later requests).
        ``claims``: the pending approvals that made the request (see ``claimed``)."""
        with self._lock:
            if self._follow_up:
                self._claims.setdefault(self._follow_up, set()).update(claims)
                run = self.runs.get(self._follow_up)
                if trigger not in run.trigger.split("; "):
                    run.trigger += f"; {trigger}"
                run.from_originals |= from_originals
                run.overrides |= overrides or {}
                self.runs.save(run)
                return run
            run = RunRecord(new_run_id(), trigger, from_originals=from_originals, overrides=overrides or {})
            self.runs.save(run)
            self._claims[run.run_id] = set(claims)
            self.log.publish_event(
                events_pb2.TrainingRequested(meta=new_meta("training"), run_id=run.run_id, trigger=trigger), run.run_id
            )
            self.progress.note(run)
            if self._active:
                self._follow_up = run.run_id
            else:
                self._start(run.run_id, submit=True)
            return run

    def _start(self, run_id: str, submit: bool) -> None:
        self._active = run_id
        self._thread = threading.Thread(target=self._work, args=(run_id, submit), name=f"run-{run_id}", daemon=True)
        self._thread.start()

    def _work(self, run_id: str, submit: bool) -> None:
        paused = 0.0  # when following this run last began to fail on an outage
        while run_id and not self._stop.is_set():
            try:
                self._follow(run_id, submit)
            except Exception as exc:
                why = outage(exc)
                paused = paused or time.monotonic()
                if why and time.monotonic() - paused < OUTAGE_GIVE_UP_S:
                    # S3 or Ray's dashboard away: the run goes on; follow it (or submit it: the
                    # job's id is the run's, so a second submission is the same job) again
                    log.warning("following a run paused on an outage", extra={"run_id": run_id, "reason": why})
                    self._stop.wait(OUTAGE_RETRY_S)
                    continue
                log.exception("following a training run failed", extra={"run_id": run_id})
            paused = 0.0
            submit = True
            with self._lock:
                self._claims.pop(run_id, None)
                run_id, self._follow_up = self._follow_up, ""
                self._active = run_id

    def _follow(self, run_id: str, submit: bool) -> None:
        """Submit (unless re-attaching) and follow the run's job until its run ends."""
        if submit:
            try:
                self._jobs.submit(run_id)
            except AtlasError as exc:
                if outage(exc):
                    raise  # not the run's fault: submitted again once the dashboard answers
                self.log.finish(self.runs.get(run_id), RunState.FAILED, f"could not start its Ray job: {exc}")
                self.progress.note(self.runs.get(run_id))
                return
        seen = _Seen()
        while not self._stop.is_set():
            run = self.runs.get(run_id)
            seen.report(run, self.progress)
            if run.state.terminal:
                metrics.step("training_run", run.seconds)
                return
            info = self._jobs.status(run_id)
            if info is None or info.finished:
                run = self.runs.get(run_id)  # the job may have recorded its outcome just before ending
                if not run.state.terminal:
                    self._job_died(run, self._jobs.failure(run_id, info))
                run = self.runs.get(run_id)
                seen.report(run, self.progress)
                metrics.step("training_run", run.seconds)
                return
            self._stop.wait(self._poll_s)

    def _job_died(self, run: RunRecord, why: str) -> None:
        candidate = candidate_set_version(run.run_id)
        if run.state is RunState.EVALUATING and self._current() == candidate:
            run.published_model_set = candidate
            self.log.finish(run, RunState.PUBLISHED, f"published before its job ended ({why})")
            self.publisher.announce(candidate, run.run_id)
            return
        cancelled_by = self._cancelled.pop(run.run_id, "")
        self.log.finish(run, RunState.FAILED, f"cancelled by {cancelled_by}" if cancelled_by else why)

    def _current(self) -> str:
        try:
            return self.registry.current()
        except AtlasError:
            return ""

    # ---- state ----

    def claimed(self) -> set[str]:
        """Approved revisions the active run and its follow-up train on (not new for the next
        trigger): what a run's job recorded, and what was pending when it was requested (two
        approvals a moment apart would otherwise each start a run for the same revisions)."""
        with self._lock:
            claimed: set[str] = set()
            for run_id in filter(None, (self._active, self._follow_up)):
                claimed |= set(self.runs.get(run_id).revisions) | self._claims.get(run_id, set())
            return claimed

    def busy(self) -> bool:
        with self._lock:
            return bool(self._active)

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self.busy()

    def stop(self) -> None:
        """Stop following (the jobs go on; the next process re-attaches)."""
        self._stop.set()

    # ---- after a restart ----

    def recover(self) -> None:
        """Follow again the run whose job still runs, fail those whose job died, restart the queued."""
        queued, attach = [], []
        for run in self.runs.list():
            if run.state.terminal:
                continue
            if run.state is RunState.QUEUED:
                queued.append(run.run_id)
                continue
            info = self._jobs.status(run.run_id)
            if info is not None and not info.finished:
                attach.append(run.run_id)
            else:
                self._job_died(
                    run, f"interrupted in state {run.state.value.upper()}: " + self._jobs.failure(run.run_id, info)
                )
        with self._lock:
            for run_id in sorted(attach)[:1]:  # one run at a time: there is at most one
                log.info("re-attached to a running training job", extra={"run_id": run_id})
                self._start(run_id, submit=False)
        for run_id in sorted(queued):
            self._request_existing(run_id)

    def _request_existing(self, run_id: str) -> None:
        with self._lock:
            if self._active:
                if not self._follow_up:
                    self._follow_up = run_id
                else:  # more than one queued before the restart: merge into the follow-up
                    self.log.finish(self.runs.get(run_id), RunState.FAILED, f"merged into queued run {self._follow_up}")
            else:
                self._start(run_id, submit=True)

    # ---- cancellation and rollback ----

    def cancel(self, run_id: str, who: str) -> RunRecord:
        run = self.runs.get(run_id)
        if run.state.terminal:
            raise Conflict(f"run {run_id} has already ended ({run.state.value})")
        with self._lock:
            if run_id == self._follow_up:
                self._follow_up = ""
                self.log.finish(run, RunState.FAILED, f"cancelled by {who} before it started")
                self.progress.note(run, reason=run.reason)
                return run
            self._cancelled[run_id] = who
        self._jobs.stop(run_id)  # the follower records the end when the job has stopped
        return run

    def rollback(self, model_set: str, reason: str) -> str:
        if self.busy():
            log.warning("rollback while a run is active; its candidate is still gated against its own base")
        return self.publisher.rollback(model_set, reason)


class _Seen:
    """What WatchRun has been told about a run, so each new step is told once."""

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.epochs = 0
        self.validated = False

    def report(self, run: RunRecord, progress: ProgressBoard) -> None:
        epochs = sum(len(losses) for losses in run.losses.values())
        if epochs > self.epochs and run.progress:
            self.epochs = epochs
            progress.note(
                run,
                architecture=run.progress["architecture"],
                epoch=run.progress["epoch"],
                loss=run.progress["loss"],
                eta_s=run.progress["eta_s"],
            )
        if run.candidate_metrics and not self.validated:
            self.validated = True
            progress.note(run, validation=run.candidate_metrics)
        if run.state != self.state:
            self.state = run.state
            progress.note(run, reason=run.reason)
