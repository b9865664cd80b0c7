"""Approvals arriving a moment apart start one run, not one each: the approvals pending when a run
is requested belong to it before its job records what it chose (found by the fault-injection suite,
where three approvals within 50 ms started a run and a follow-up that had nothing left to train on).

The ledger, the run records and the events are real (S3 and Kafka of the session stack); the Ray
job is a held one that never ends, and tracking's confirmation is taken as given: what is under
test is only which requests the triggers make."""

from __future__ import annotations

import threading

import pytest

from atlasloop.common.approvals import Verified
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_rest import JobInfo
from atlasloop.events.v1 import events_pb2
from atlasloop.training.scheduler import Scheduler
from atlasloop.training.settings import TrainingSettings, TriggerPolicy
from atlasloop.training.triggers import Triggers

pytestmark = pytest.mark.integration


class HeldJobs:
    """Ray jobs that run until the test ends."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, run_id: str) -> None:
        self.submitted.append(run_id)

    def status(self, run_id: str) -> JobInfo:
        return JobInfo(run_id, "RUNNING", "", {})

    def stop(self, run_id: str) -> bool:
        return True

    def failure(self, run_id: str, info: JobInfo | None) -> str:
        return ""


class Confirmed:
    def verify(self, event: events_pb2.AnnotationApproved) -> Verified:
        return Verified(event.revision_id, event.case_id, event.label_version, ["liver"])


def test_approvals_a_moment_apart_start_one_run(stack, unique):
    settings = TrainingSettings(
        s3=stack.s3_settings(bucket=f"trig-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"g{unique}."}),
    )
    store = ObjectStore(settings.s3)
    store.check_bucket()
    producer = EventProducer(settings.kafka, "training")
    jobs = HeldJobs()
    scheduler = Scheduler(settings, store, producer, jobs, poll_s=0.05)
    triggers = Triggers(scheduler, TriggerPolicy(approved_threshold=2), Confirmed())

    def approve(n: int) -> None:
        triggers.on_approved(
            events_pb2.AnnotationApproved(
                meta=new_meta("tracking"), case_id=f"c{n}", revision_id=f"r{n}", label_version=f"v{n}"
            )
        )

    try:
        for n in range(3):  # the third while the first run's job has recorded nothing yet
            approve(n)
        runs = scheduler.runs.list()
        assert len(runs) == 1 and runs[0].trigger == "approved>=2", [(r.run_id, r.trigger) for r in runs]
        # the third and two more after the run was requested are new: they queue the one follow-up
        threads = [threading.Thread(target=approve, args=(n,)) for n in (3, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(scheduler.runs.list()) == 2
        claimed = scheduler.claimed()
        assert {"r0", "r1", "r2"} <= claimed and len(claimed) >= 4, claimed
        approve(5)  # joins the follow-up if anything: never a third run
        assert len(scheduler.runs.list()) == 2 and jobs.submitted == [runs[0].run_id]
    finally:
        scheduler.stop()
        producer.close()
