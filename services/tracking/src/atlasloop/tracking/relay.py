"""``python -m atlasloop.tracking.relay``: the outbox relay on its own, until SIGTERM.

The tracking service runs a relay in-process; this entry point runs one as a separate process
(or deployment) against the same database, for example to scale it apart or to test crashes.
"""

from __future__ import annotations

import signal
import threading

from sqlalchemy.orm import sessionmaker

from atlasloop.common.database import make_engine
from atlasloop.common.events import EventProducer
from atlasloop.common.jsonlog import configure_logging
from atlasloop.tracking.outbox import OutboxRelay
from atlasloop.tracking.settings import TrackingSettings


def main() -> None:
    settings = TrackingSettings()
    configure_logging("tracking-relay", settings.log_level)
    relay = OutboxRelay(sessionmaker(make_engine(settings.database)), EventProducer(settings.kafka, "tracking-relay"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay.start()
    stop.wait()
    relay.stop()


if __name__ == "__main__":
    main()
