"""Assembles the inference service: the Serve link, servicer, event consumers, readiness checks."""

from __future__ import annotations

import logging
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
from atlasloop.inference.repredict import Sweeper
from atlasloop.inference.servicer import InferenceServiceServicer
from atlasloop.inference.serving import Serving
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)
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
    servicer = InferenceServiceServicer(serving, store)

    case_locks: dict[str, threading.Lock] = {}
    locks_guard = threading.Lock()

    def predict(case_id: str) -> None:
        """One case at a time per case id: the event consumer and the sweep may ask for the same
        case together, and only one of them may compute and announce it. (Several inference pods
        each run a sweep; Kafka gives each case's events to one pod, the sweeps may overlap.)"""
        with locks_guard:
            lock = case_locks.setdefault(case_id, threading.Lock())
        with lock:
            for _ in serving.predict(case_id):  # idempotent: a repeated case returns its stored record
                pass

    sweeper = Sweeper(lambda: StorageClient(settings.storage_target, settings.storage_token), predict)

    def on_event(event, _delivery) -> None:
        if isinstance(event, events_pb2.CaseIngested):
            if settings.predict_labelled or not event.original_label_version:
                predict(event.case_id)
        elif settings.deploy_serve:
            # model.published: serve the new set (Serve rolls replicas without downtime), then
            # bring every case still labelled by the ensemble up to it, in the background.
            serving.deploy(event.model_set)
            sweeper.request()
        else:  # under KubeRay the RayService's serveConfig names the set; the operator rolls it
            log.warning("model set published; this service does not own the Serve application",
                        extra={"model_set": event.model_set})

    consumer = ConsumerThread(settings.kafka, "inference", [events_pb2.CaseIngested, events_pb2.ModelPublished],
                              on_event)

    def register(server: grpc.Server) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="inference",
        services=[SERVICE],
        register=register,
        checks=[s3_bucket_check(store), kafka_check(settings.kafka), ray_check(settings.ray.address),
                serving_check(serving, settings.deploy_serve)],
        on_start=[consumer.start, sweeper.start] if settings.consume_events else [],
        on_stop=[consumer.stop, sweeper.stop],
    )
