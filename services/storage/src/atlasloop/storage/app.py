"""Assembles the storage service: its servicer, readiness checks and lifecycle hooks."""

from __future__ import annotations

import grpc

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.storage.servicer import StorageServiceServicer
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

SERVICE = storage_pb2.DESCRIPTOR.services_by_name["StorageService"]


def build(settings: StorageSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    servicer = StorageServiceServicer()

    def register(server: grpc.Server) -> None:
        storage_pb2_grpc.add_StorageServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="storage",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka)],
    )
