"""Assembles the inference service: the ensemble client, core, servicer, event consumer, sweep, readiness checks."""

from __future__ import annotations

import grpc

from atlasloop.common.events import ConsumerThread
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.common.readiness import ReadinessCheck, kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.common.storage_client import StorageClient
from atlasloop.events.v1 import events_pb2
from atlasloop.inference.core import InferenceCore
from atlasloop.inference.ensemble_client import EnsembleClient
from atlasloop.inference.first_set import model_set_check
from atlasloop.inference.repredict import Sweeper
from atlasloop.inference.servicer import InferenceServiceServicer
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]


def build(settings: InferenceSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    dashboard = RayDashboard(settings.ray_dashboard_url, token=settings.ray_auth_token)
    ensemble = EnsembleClient(settings.serve_url, settings.serve_app_name, dashboard)
    core = InferenceCore(ensemble, store)
    core.sweeper = sweeper = Sweeper(
        lambda: StorageClient(settings.storage_target, settings.storage_token, settings.client_tls), core.predict_case
    )
    servicer = InferenceServiceServicer(core)
    consumer = ConsumerThread(
        settings.kafka,
        "inference",
        [events_pb2.CaseIngested, events_pb2.ModelPublished],
        lambda event, _delivery: core.on_event(event, settings.predict_labelled),
    )

    def register(server: grpc.Server) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="inference",
        services=[SERVICE],
        register=register,
        checks=[
            s3_bucket_check(store),
            kafka_check(settings.kafka),
            model_set_check(store),
            ReadinessCheck("ensemble", ensemble.ready),
        ],
        on_start=[consumer.start, sweeper.start] if settings.consume_events else [],
        on_stop=[consumer.stop, sweeper.stop, ensemble.close],
    )
