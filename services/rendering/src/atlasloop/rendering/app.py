"""Assembles the rendering service: volume cache, core, servicer, readiness checks."""

from __future__ import annotations

import grpc

from atlasloop.common.cpus import usable_cpus
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.rendering.core import RenderingCore
from atlasloop.rendering.servicer import RenderingServiceServicer
from atlasloop.rendering.settings import RenderingSettings
from atlasloop.rendering.v1 import rendering_pb2, rendering_pb2_grpc
from atlasloop.rendering.volumes import VolumeSource

SERVICE = rendering_pb2.DESCRIPTOR.services_by_name["RenderingService"]


def build(settings: RenderingSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    core = RenderingCore(
        VolumeSource(store, settings.cache_bytes, settings.attention_mode),
        store,
        settings.max_size_px,
        settings.max_salient,
        settings.draw_slots or usable_cpus(),
    )
    servicer = RenderingServiceServicer(core)

    def register(server: grpc.Server) -> None:
        rendering_pb2_grpc.add_RenderingServiceServicer_to_server(servicer, server)

    return ServiceSpec(name="rendering", services=[SERVICE], register=register, checks=[s3_bucket_check(store)])
