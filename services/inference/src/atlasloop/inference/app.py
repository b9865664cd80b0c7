"""Assembles the inference service: its servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import grpc

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, ray_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.inference.servicer import InferenceServiceServicer
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]


def build(settings: InferenceSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    servicer = InferenceServiceServicer()

    def register(server: grpc.Server) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="inference",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka), ray_check(settings.ray.address)],
    )
