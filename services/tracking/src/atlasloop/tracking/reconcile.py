"""The reconciliation sweep between storage's cases and tracking's records.

Events make the two agree in the normal course; the sweep repairs what events cannot:

- **a case storage holds and tracking has never heard of**: an import killed between writing the
  case and publishing ``case.ingested``, whose client never retried (a retry would announce it). The
  sweep asks storage to announce it again (``AnnounceCase``), so tracking records it and inference
  predicts it through the one path every case takes;
- **an unlabelled case stuck in ``ingested``**: its prediction never happened (inference's event
  was dead-lettered, or the model set could not be served for longer than the consumer waits).
  Announced again likewise; inference is idempotent per case and model set, so a case it did
  predict meanwhile is not predicted twice;
- **a tracked case storage does not hold**: a ``case.ingested`` whose import was rolled back after
  the broker stored it, or one forged by a pod that may write to the topic. Reported (log,
  metric, the ``Reconcile`` reply), never changed: deleting records of the system of record is an
  administrator's decision.

Only cases older than ``reconcile_grace_s`` are touched, so an import or prediction in flight is
not raced, and at most ``reconcile_max_announce`` cases are announced per sweep, so a large backlog
is worked off over several sweeps instead of flooding the broker. Storage is read page by page and
each page is compared against the database with one query; the sweep keeps the set of storage's
case ids (about 100 bytes a case: 10 MB for 100,000 cases) to find the orphans.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common import metrics
from atlasloop.common.errors import NotFound
from atlasloop.common.storage_client import StorageClient
from atlasloop.tracking.models import Case

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What one sweep found and did."""

    storage_cases: int = 0
    announced_missing: list[str] = field(default_factory=list)
    announced_stuck: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    deferred: int = 0

    @property
    def announced(self) -> int:
        return len(self.announced_missing) + len(self.announced_stuck)


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        storage: StorageClient,
        grace_s: float,
        max_announce: int,
        interval_s: float = 0,
    ) -> None:
        self._sessions, self._storage = sessions, storage
        self._grace = timedelta(seconds=grace_s)
        self._max_announce = max_announce
        self._interval_s = interval_s
        self._lock = threading.Lock()  # one sweep at a time: the timer's and an admin's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    def sweep(self) -> Report:
        with self._lock:
            report = Report()
            cutoff = datetime.now(UTC) - self._grace
            self._missing(report, cutoff)
            self._stuck(report, cutoff)
        metrics.reconciled("announced_missing", len(report.announced_missing))
        metrics.reconciled("announced_stuck", len(report.announced_stuck))
        metrics.reconciled("orphan", len(report.orphans))
        if report.announced or report.orphans:
            log.warning(
                "reconciliation repaired or found cases",
                extra={
                    "announced_missing": report.announced_missing,
                    "announced_stuck": report.announced_stuck,
                    "orphans": report.orphans,
                    "deferred": report.deferred,
                },
            )
        return report

    def _announce(self, report: Report, into: list[str], case_id: str) -> None:
        if report.announced >= self._max_announce:
            report.deferred += 1
            return
        try:
            self._storage.announce(case_id)
        except NotFound:  # removed since it was listed
            return
        into.append(case_id)

    def _missing(self, report: Report, cutoff: datetime) -> None:
        """Storage's cases page by page against tracking's records, then tracking's against storage's
        ids. Listing order is not relied on: S3 stores disagree (AWS lists ``cases/<id>/`` folders in
        byte order of the whole key, SeaweedFS's filer by folder name)."""
        stored: set[str] = set()
        for page in self._storage.case_pages():
            report.storage_cases += len(page)
            listed = [case.case_id for case in page]
            stored.update(listed)
            with self._sessions() as session:
                known = set(session.scalars(select(Case.id).where(Case.id.in_(listed))))
            for case in page:
                if case.case_id in known:
                    continue
                if case.imported_at.ToDatetime(tzinfo=UTC) > cutoff:
                    report.deferred += 1  # an import whose event may still be on its way
                else:
                    self._announce(report, report.announced_missing, case.case_id)
        with self._sessions() as session:
            tracked = session.execute(select(Case.id, Case.created_at).execution_options(yield_per=1000))
            report.orphans = sorted(
                case_id for case_id, created_at in tracked if case_id not in stored and created_at < cutoff
            )

    def _stuck(self, report: Report, cutoff: datetime) -> None:
        with self._sessions() as session:
            stuck = session.scalars(
                select(Case.id)
                .where(Case.state == "ingested", Case.current_label_version == "", Case.updated_at < cutoff)
                .order_by(Case.updated_at)
                .limit(self._max_announce + 1)
            ).all()
        orphans = set(report.orphans)
        for case_id in stuck:
            if case_id not in orphans:
                self._announce(report, report.announced_stuck, case_id)

    # the periodic sweep
    def start(self) -> None:
        if self._interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sweep()
            except Exception:  # storage or the database away: the next sweep tries again
                log.warning("reconciliation sweep failed; trying again next interval", exc_info=True)
