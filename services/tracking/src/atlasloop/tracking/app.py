"""Assembles the tracking service: its servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import grpc

from atlasloop.common.database import make_engine
from atlasloop.common.readiness import database_check, kafka_check
from atlasloop.common.server import ServiceSpec
from atlasloop.tracking.servicer import TrackingServiceServicer
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

SERVICE = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"]


def build(settings: TrackingSettings) -> ServiceSpec:
    engine = make_engine(settings.database)
    servicer = TrackingServiceServicer()

    def register(server: grpc.Server) -> None:
        tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="tracking",
        services=[SERVICE],
        register=register,
        checks=[database_check(engine), kafka_check(settings.kafka)],
    )
