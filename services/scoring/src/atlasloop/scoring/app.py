"""Assembles the scoring service: core, servicer, the case.predicted consumer, readiness checks."""

from __future__ import annotations

import grpc

from atlasloop.common.events import ConsumerThread, EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.events.v1 import events_pb2
from atlasloop.scoring.core import ScoringCore
from atlasloop.scoring.servicer import ScoringServiceServicer
from atlasloop.scoring.settings import ScoringSettings
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc

SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"]


def build(settings: ScoringSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    producer = EventProducer(settings.kafka, "scoring")
    core = ScoringCore(store, producer, settings.mode, settings.improved())
    servicer = ScoringServiceServicer(core)
    consumer = ConsumerThread(
        settings.kafka,
        "scoring",
        [events_pb2.CasePredicted],
        lambda event, _delivery: core.on_case_predicted(event.case_id, event.model_set),
    )

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
