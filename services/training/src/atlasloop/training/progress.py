"""Progress of runs as ``WatchRun`` streams it: each run's updates (state changes, epoch reports
with loss and ETA, the gate's validation scores), kept in memory for the most recent runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from atlasloop.common.domain import RunState
from atlasloop.training.runs import OrganScore, RunRecord

KEEP_RUNS = 50


@dataclass(frozen=True)
class Update:
    state: RunState
    architecture: str = ""
    epoch: int = 0
    loss: float = 0.0
    eta_s: float = 0.0
    validation: dict[str, OrganScore] = field(default_factory=dict)
    reason: str = ""


class ProgressBoard:
    def __init__(self, load: Callable[[str], RunRecord]) -> None:
        self._load = load
        self._updates: dict[str, list[Update]] = {}
        self._changed = threading.Condition()

    def note(self, run: RunRecord, **extra: object) -> None:
        with self._changed:
            self._updates.setdefault(run.run_id, []).append(Update(run.state, **extra))  # type: ignore[arg-type]
            while len(self._updates) > KEEP_RUNS:
                self._updates.pop(next(iter(self._updates)))
            self._changed.notify_all()

    def watch(self, run_id: str, poll_s: float = 1.0) -> Iterator[Update]:
        """Progress reports of a run until it ends (at least its final state)."""
        self._load(run_id)  # NotFound for an unknown run
        seen = 0
        while True:
            with self._changed:
                updates = list(self._updates.get(run_id, []))
                if len(updates) == seen and not (updates and updates[-1].state.terminal):
                    self._changed.wait(poll_s)
                    updates = list(self._updates.get(run_id, []))
            yield from updates[seen:]
            seen = len(updates)
            if updates and updates[-1].state.terminal:
                return
            if not updates:  # a run from before this process started
                run = self._load(run_id)
                if run.state.terminal:
                    yield Update(run.state)
                    return
