"""Assembles the training service: the scheduler of Ray jobs, triggers on ``annotation.approved``, servicer, checks."""

from __future__ import annotations

import grpc

from atlasloop.common.approvals import ApprovalCheck
from atlasloop.common.errors import NotReady
from atlasloop.common.events import ConsumerThread, EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.common.readiness import ReadinessCheck, kafka_check, s3_bucket_check
from atlasloop.common.server import ServiceSpec
from atlasloop.events.v1 import events_pb2
from atlasloop.training.core import TrainingCore
from atlasloop.training.jobs import RunJobs
from atlasloop.training.scheduler import Scheduler
from atlasloop.training.servicer import TrainingServiceServicer
from atlasloop.training.settings import TrainingSettings
from atlasloop.training.triggers import Triggers
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

SERVICE = training_pb2.DESCRIPTOR.services_by_name["TrainingService"]


def build(settings: TrainingSettings) -> ServiceSpec:
    store = ObjectStore(settings.s3)
    producer = EventProducer(settings.kafka, "training")
    dashboard = RayDashboard(settings.ray_dashboard_url, token=settings.ray_auth_token)
    scheduler = Scheduler(settings, store, producer, RunJobs(dashboard, settings), settings.job_poll_s)
    check = ApprovalCheck(settings.tracking_target, settings.tracking_token, tls=settings.client_tls)
    triggers = Triggers(scheduler, settings.triggers, check)
    servicer = TrainingServiceServicer(TrainingCore(scheduler))
    consumer = ConsumerThread(
        settings.kafka,
        "training",
        [events_pb2.AnnotationApproved],
        lambda event, _delivery: triggers.on_approved(event),
    )

    def register(server: grpc.Server) -> None:
        training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, server)

    on_start = [scheduler.recover, triggers.start] + ([consumer.start] if settings.consume_events else [])
    return ServiceSpec(
        name="training",
        services=[SERVICE],
        register=register,
        checks=[
            s3_bucket_check(store),
            kafka_check(settings.kafka),
            ReadinessCheck("ray", lambda: _has_nodes(dashboard)),
        ],
        on_start=on_start,
        on_stop=[consumer.stop, triggers.stop, scheduler.stop, check.close],
    )


def _has_nodes(dashboard: RayDashboard) -> None:
    """Readiness: the Ray cluster answers and has a node to run jobs on."""
    if dashboard.alive_nodes() < 1:
        raise NotReady("the Ray cluster has no live node")
