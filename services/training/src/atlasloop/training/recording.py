"""Recording a run's steps: its record saved at every change (``RunStore``), and the events that
announce it (``training.requested``, ``training.progress``, ``training.completed``). The Ray job
records what it does; the training service records what it decides (a queued run, a job that died,
a cancellation)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from atlasloop.common.domain import RunState
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.events.v1 import events_pb2
from atlasloop.training.runs import RunRecord, RunStore

log = logging.getLogger(__name__)


class RunLog:
    def __init__(self, runs: RunStore, producer: EventProducer) -> None:
        self.runs = runs
        self._producer = producer

    def transition(self, run: RunRecord, state: RunState) -> None:
        run.state = state
        self.runs.save(run)

    def finish(self, run: RunRecord, state: RunState, reason: str, started: float | None = None) -> None:
        """End the run in ``state``; ``started`` (monotonic) sets its duration."""
        run.state, run.reason = state, reason
        if started is not None:
            run.seconds = time.monotonic() - started
        run.finished_at = datetime.now(UTC).isoformat()
        self.runs.save(run)
        log.info("training run ended", extra={"run_id": run.run_id, "state": state.value, "reason": reason})
        self.publish_event(
            events_pb2.TrainingCompleted(
                meta=new_meta("training"), run_id=run.run_id, passed_gate=state is RunState.PUBLISHED, reason=reason
            ),
            run.run_id,
        )

    def publish_event(self, event: object, key: str) -> None:
        """Requested, progress and completed events; their loss must not fail a run."""
        try:
            self._producer.publish(event, key=key)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            log.warning("could not publish event", extra={"event": type(event).__name__})
