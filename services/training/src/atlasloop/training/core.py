"""The training service's operations, free of gRPC: start, read, list, watch and roll back runs.

The scheduler runs one run at a time (``scheduler``); each run is a ``run_job``; this module is
what the servicer and the event triggers call, with the validation a caller's input needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from atlasloop.common.errors import InvalidInput
from atlasloop.training.progress import Update
from atlasloop.training.recipe import Recipe
from atlasloop.training.runs import RunRecord
from atlasloop.training.scheduler import Scheduler

MAX_PAGE = 100
MAX_REASON = 200


class TrainingCore:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def start_run(self, reason: str, from_originals: bool, epochs: int, learning_rate: float) -> RunRecord:
        """A manual run (or its place in the queue), with this run's recipe overrides checked first."""
        reason = reason.strip() or "manual"
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"reason is longer than {MAX_REASON} characters")
        overrides: dict[str, Any] = {}
        if epochs:
            overrides["epochs"] = epochs
        if learning_rate:
            overrides["learning_rate"] = learning_rate
        try:
            Recipe.model_validate(self.scheduler.settings.recipe.model_dump() | overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(f"recipe overrides: {first['loc'][0]}: {first['msg']}") from None
        return self.scheduler.request(f"manual:{reason}", from_originals=from_originals, overrides=overrides)

    def run(self, run_id: str) -> RunRecord:
        return self.scheduler.runs.get(run_id)

    def runs(self, page_size: int, page_token: str) -> tuple[list[RunRecord], str]:
        """A page of runs, newest first, and the token of the next page ("" at the end)."""
        if page_size < 0:
            raise InvalidInput("page_size must not be negative")
        size = min(page_size or 20, MAX_PAGE)
        try:
            start = int(page_token or 0)
        except ValueError:
            raise InvalidInput("page_token is not one this service issued") from None
        runs = self.scheduler.runs.list()
        return runs[start : start + size], str(start + size) if start + size < len(runs) else ""

    def watch(self, run_id: str) -> Iterator[Update]:
        return self.scheduler.progress.watch(run_id)

    def cancel(self, run_id: str, who: str) -> RunRecord:
        return self.scheduler.cancel(run_id, who)

    def rollback(self, model_set: str, reason: str) -> str:
        if not model_set:
            raise InvalidInput("model_set is empty")
        return self.scheduler.rollback(model_set, reason.strip())
