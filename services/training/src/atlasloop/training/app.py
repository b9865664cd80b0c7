"""Assembles the training service: its servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import grpc

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, ray_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.training.servicer import TrainingServiceServicer
from atlasloop.training.settings import TrainingSettings
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

SERVICE = training_pb2.DESCRIPTOR.services_by_name["TrainingService"]


def build(settings: TrainingSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    servicer = TrainingServiceServicer()

    def register(server: grpc.Server) -> None:
        training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="training",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka), ray_check(settings.ray.address)],
    )
