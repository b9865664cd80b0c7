"""The transactional outbox: events are rows written with the change they announce, and a relay
publishes them in order and marks them sent.

The relay takes the oldest unsent rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
share the work without sending a row twice at once), publishes each with the broker's
acknowledgement, and marks it sent in the same transaction. It stops a batch at the first failure,
so one case's events never overtake each other. A relay killed between publishing and committing
publishes that row again after restart with the same event id, which consumers deduplicate.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common import tracing
from atlasloop.common.events import EventProducer, encode, topic_for
from atlasloop.common.settings import KafkaSettings
from atlasloop.tracking.models import OutboxEvent

log = logging.getLogger(__name__)


def add_event(session: Session, settings: KafkaSettings, event: Any, key: str) -> None:
    """Stage ``event`` in the caller's transaction, with the current trace context."""
    payload, _ = encode(event)
    session.add(
        OutboxEvent(
            event_id=event.meta.event_id,
            topic=topic_for(type(event), settings),
            key=key,
            event_type=event.DESCRIPTOR.full_name,
            payload=payload,
            trace_context=tracing.current_headers(),
        )
    )


class OutboxRelay:
    def __init__(
        self, sessions: sessionmaker[Session], producer: EventProducer, batch: int = 20, idle_s: float = 0.5
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        self._batch = batch
        self._idle_s = idle_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def relay_once(self) -> int:
        """Publish up to one batch; returns how many rows were sent.

        On PostgreSQL the batch holds a transaction-scoped advisory lock: one relay publishes at a
        time across replicas, so a case's events leave in the order they were written.
        """
        sent = 0
        with self._sessions.begin() as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres and not session.execute(text("SELECT pg_try_advisory_xact_lock(727275)")).scalar():
                return 0
            rows = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.sent_at.is_(None))
                .order_by(OutboxEvent.id)
                .limit(self._batch)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                headers = [("event-type", row.event_type.encode()), ("event-id", row.event_id.encode())]
                headers += [(name, str(value).encode()) for name, value in (row.trace_context or {}).items()]
                try:
                    self._producer.publish_raw(row.topic, row.key, row.payload, headers)
                except Exception:  # keep order: stop here, retry the rest later
                    log.warning("outbox relay could not publish; will retry", exc_info=True)
                    break
                row.sent_at = datetime.now(UTC)
                sent += 1
        return sent

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.relay_once()
            except Exception:  # a database hiccup must not end the relay
                log.exception("outbox relay failed; retrying")
                sent = 0
            if not sent:
                self._stop.wait(self._idle_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
