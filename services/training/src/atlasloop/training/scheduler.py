"""Runs, one at a time: start a requested run, queue one follow-up behind it, recover after a restart.

A request while a run is active queues one follow-up run; further requests join that follow-up
(their trigger is appended) instead of piling up. After a restart a run that was mid-way is marked
FAILED with that reason, and one whose set had already become current is completed as PUBLISHED
(its ``model.published`` is sent again; consumers are idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from atlasloop.common.domain import RunState
from atlasloop.common.events import new_meta
from atlasloop.events.v1 import events_pb2
from atlasloop.training.publish import candidate_set_version
from atlasloop.training.run_job import RunJob
from atlasloop.training.runs import RunRecord, new_run_id

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, job: RunJob) -> None:
        self.job = job
        self.runs = job.runs
        self.ledger = job.ledger
        self._lock = threading.Lock()
        self._active = ""
        self._follow_up = ""
        self._thread: threading.Thread | None = None

    def request(self, trigger: str, from_originals: bool = False, overrides: dict[str, Any] | None = None) -> RunRecord:
        """Start a run now, or queue one follow-up behind the active run (joined by later requests)."""
        with self._lock:
            if self._follow_up:
                run = self.runs.get(self._follow_up)
                if trigger not in run.trigger.split("; "):
                    run.trigger += f"; {trigger}"
                run.from_originals |= from_originals
                run.overrides |= overrides or {}
                self.runs.save(run)
                return run
            run = RunRecord(new_run_id(), trigger, from_originals=from_originals, overrides=overrides or {})
            self.runs.save(run)
            self.job.publish_event(
                events_pb2.TrainingRequested(meta=new_meta("training"), run_id=run.run_id, trigger=trigger), run.run_id
            )
            self.job.progress.note(run)
            if self._active:
                self._follow_up = run.run_id
            else:
                self._start(run.run_id)
            return run

    def _start(self, run_id: str) -> None:
        self._active = run_id
        self._thread = threading.Thread(target=self._work, args=(run_id,), name=f"run-{run_id}", daemon=True)
        self._thread.start()

    def _work(self, run_id: str) -> None:
        while run_id:
            self.job.execute(self.runs.get(run_id))
            with self._lock:
                run_id, self._follow_up = self._follow_up, ""
                self._active = run_id

    def claimed(self) -> set[str]:
        """Approved revisions the active run trains on (not new for the next trigger)."""
        with self._lock:
            return set(self.runs.get(self._active).revisions) if self._active else set()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._active)

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self.busy()

    def recover(self) -> None:
        """After a restart: finish what can be finished, fail what was cut off, restart the queued."""
        queued = []
        for run in self.runs.list():
            if run.state.terminal:
                continue
            if run.state is RunState.QUEUED:
                queued.append(run.run_id)
                continue
            candidate = candidate_set_version(run.run_id)
            if run.state is RunState.EVALUATING and self.job.registry.current() == candidate:
                run.published_model_set = candidate
                self.job.finish(run, RunState.PUBLISHED, "published before a restart of the training service")
                self.job.publisher.announce(candidate, run.run_id)
            else:
                self.job.finish(
                    run,
                    RunState.FAILED,
                    f"interrupted in state {run.state.value.upper()} by a restart of the training service",
                )
        for run_id in sorted(queued):
            self._request_existing(run_id)

    def _request_existing(self, run_id: str) -> None:
        with self._lock:
            if self._active:
                if not self._follow_up:
                    self._follow_up = run_id
                else:  # more than one queued before the restart: merge into the follow-up
                    self.job.finish(self.runs.get(run_id), RunState.FAILED, f"merged into queued run {self._follow_up}")
            else:
                self._start(run_id)

    def rollback(self, model_set: str, reason: str) -> str:
        if self.busy():
            log.warning("rollback while a run is active; its candidate is still gated against its own base")
        return self.job.publisher.rollback(model_set, reason)
