"""Assembles the scoring service: core, servicer, the case.predicted consumer, readiness checks."""

from __future__ import annotations

import threading

import grpc

from atlasloop.common.events import EventConsumer, EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.events.v1 import events_pb2
from atlasloop.scoring.core import ScoringCore
from atlasloop.scoring.servicer import ScoringServiceServicer
from atlasloop.scoring.settings import ScoringSettings
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc

SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"]


class PredictedConsumer:
    """Scores each case.predicted in a background thread; offsets commit after success."""

    def __init__(self, settings: ScoringSettings, core: ScoringCore) -> None:
        self._settings = settings
        self._core = core
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _handle(self, event: events_pb2.CasePredicted, _delivery) -> None:
        self._core.on_case_predicted(event.case_id, event.model_set)

    def start(self) -> None:
        def run() -> None:
            consumer = EventConsumer(self._settings.kafka, "scoring", [events_pb2.CasePredicted], self._handle)
            try:
                consumer.run(self._stop)
            finally:
                consumer.close()

        self._thread = threading.Thread(target=run, name="case-predicted", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def build(settings: ScoringSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    producer = EventProducer(settings.kafka, "scoring")
    core = ScoringCore(store, producer, settings.mode)
    servicer = ScoringServiceServicer(core)
    consumer = PredictedConsumer(settings, core)

    def register(server: grpc.Server) -> None:
        scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="scoring",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka)],
        on_start=[consumer.start] if settings.consume_events else [],
        on_stop=[consumer.stop, producer.close],
    )
