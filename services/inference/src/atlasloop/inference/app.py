"""Assembles the inference service: the Serve link, core, servicer, event consumer, sweep, readiness checks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from atlasloop.common.errors import Fatal
from atlasloop.common.events import ConsumerThread
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import ReadinessCheck, kafka_check, ray_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.common.storage_client import StorageClient
from atlasloop.events.v1 import events_pb2
from atlasloop.inference.core import InferenceCore
from atlasloop.inference.repredict import Sweeper
from atlasloop.inference.servicer import InferenceServiceServicer
from atlasloop.inference.serving import Serving
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]


def serving_check(serving: Serving, deploy: bool, timeout_s: float = 10.0) -> ReadinessCheck:
    """NOT_SERVING until the ensemble runs; deploys it first when this service owns the deployment.

    A Ray driver does not survive the loss of its cluster: once the ensemble has run, a failed or
    hung status call is Fatal (liveness NOT_SERVING, so Kubernetes restarts the pod). Calls run
    with a timeout so a wedged driver cannot freeze the health monitor.
    """
    deployed, served = threading.Event(), threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-status")

    def probe() -> None:
        if deploy and not deployed.is_set():
            serving.deploy()
            deployed.set()
        try:
            pool.submit(serving.ready).result(timeout=timeout_s)
        except Exception as exc:
            if served.is_set():
                raise Fatal(f"lost the Ray cluster serving the ensemble ({type(exc).__name__}); restart") from None
            raise
        served.set()

    return ReadinessCheck("model-set", probe)


def build(settings: InferenceSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    serving = Serving(settings, store)
    core = InferenceCore(serving, store, owns_serve_app=settings.deploy_serve)
    core.sweeper = sweeper = Sweeper(
        lambda: StorageClient(settings.storage_target, settings.storage_token), core.predict_case
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
            ray_check(settings.ray.address),
            serving_check(serving, settings.deploy_serve),
        ],
        on_start=[consumer.start, sweeper.start] if settings.consume_events else [],
        on_stop=[consumer.stop, sweeper.stop],
    )
