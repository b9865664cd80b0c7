"""``python -m atlasloop.training.job RUN_ID``: one training run as a Ray job, on the Ray cluster.

The job's driver runs on a Ray node (KubeRay: the head, or a RayJob's submitter), joins its own
cluster, and runs the whole run there: the training set, Ray Train fine-tuning, the gate's
evaluation in Ray tasks, publishing. It records every step in the run record (S3) and publishes the
run's events; the training service follows it from those and from the job's status. Its settings
are the Ray node's ``ATLASLOOP_TRAINING_*`` environment (addresses and credentials) with what the
service carried in ``ATLASLOOP_TRAINING_RUN_SETTINGS`` (recipe, gate, resources) on top.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from atlasloop.common.events import EventProducer
from atlasloop.common.jsonlog import configure_logging
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.settings import merged
from atlasloop.common.storage_client import StorageClient
from atlasloop.training.jobs import RUN_SETTINGS_ENV
from atlasloop.training.run_job import RunJob
from atlasloop.training.settings import TrainingSettings

log = logging.getLogger(__name__)


def job_settings() -> TrainingSettings:
    carried = json.loads(os.environ.get(RUN_SETTINGS_ENV, "{}"))
    return TrainingSettings.model_validate(merged(TrainingSettings().model_dump(), carried))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m atlasloop.training.job RUN_ID", file=sys.stderr)  # noqa: T201
        return 2
    settings = job_settings()
    configure_logging("training-job", settings.log_level)
    import ray

    if not ray.is_initialized():
        ray.init()  # the job's own cluster (RAY_ADDRESS is set by the job supervisor)
    store = ObjectStore(settings.s3)
    job = RunJob(
        settings,
        store,
        EventProducer(settings.kafka, "training-job"),
        lambda: StorageClient(settings.storage_target, settings.storage_token, settings.client_tls),
    )
    run = job.runs.get(args[0])
    if run.state.terminal:
        log.info("run already ended; nothing to do", extra={"run_id": run.run_id, "state": run.state.value})
        return 0
    job.execute(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
