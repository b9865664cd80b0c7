"""Assembles the scoring service: its servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import grpc

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.scoring.servicer import ScoringServiceServicer
from atlasloop.scoring.settings import ScoringSettings
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc

SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"]


def build(settings: ScoringSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    servicer = ScoringServiceServicer()

    def register(server: grpc.Server) -> None:
        scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="scoring",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka)],
    )
