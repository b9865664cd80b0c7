"""Which cases a newly published model set predicts again, and the background sweep that does it.

A case is re-predicted while every label it has was made by the ensemble (or it has none yet):
human revisions and labels imported with the case are never replaced by a pseudo-label.
Predictions are idempotent per (case, model set), so a repeated sweep computes nothing twice.

The sweep runs in its own thread, not in the event handler: thousands of cases take far longer
than a consumer may stay away from its group. It is requested on ``model.published`` and once at
start-up, so a sweep cut short by a restart is finished by the next process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from atlasloop.common.domain import LabelSource
from atlasloop.common.storage_client import StorageClient

log = logging.getLogger(__name__)
KEEP = {LabelSource.HUMAN, LabelSource.ORIGINAL}


def ai_labelled_cases(client: StorageClient) -> Iterator[str]:
    """Case ids whose labels are still AI-made, in the storage service's order."""
    for case_id in client.case_ids():
        if not any(LabelSource.from_proto(v.source) in KEEP for v in client.label_versions(case_id)):
            yield case_id


def repredict(client: StorageClient, predict: Callable[[str], object]) -> int:
    """Predict every AI-labelled case with the served set; returns how many were sent."""
    count = 0
    for case_id in ai_labelled_cases(client):
        predict(case_id)
        count += 1
    log.info("re-predicted AI-labelled cases", extra={"cases": count})
    return count


class Sweeper:
    """Runs ``repredict`` in the background whenever asked; requests made during a sweep
    coalesce into one more sweep. A failed sweep is retried after ``retry_s``."""

    def __init__(
        self, client: Callable[[], StorageClient], predict: Callable[[str], object], retry_s: float = 10.0
    ) -> None:
        self._client, self._predict, self._retry_s = client, predict, retry_s
        self._wanted, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="repredict-sweep", daemon=True)
        self.sweeps = 0

    def request(self) -> None:
        self._wanted.set()

    def start(self) -> None:
        self._thread.start()
        self.request()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():  # a service stopped before it started sweeping
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            client = self._client()
            try:
                repredict(client, self._predict)
                self.sweeps += 1
            except Exception:  # storage or the ensemble not ready yet: try again later
                log.warning("re-prediction sweep failed; retrying", exc_info=True)
                self._stop.wait(self._retry_s)
                self._wanted.set()
            finally:
                client.close()
