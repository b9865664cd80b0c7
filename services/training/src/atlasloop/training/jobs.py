"""Training runs as Ray jobs, submitted and followed through the Ray dashboard's REST API (as
``ray job submit`` does; a KubeRay RayJob is the same job on Kubernetes). The training service never
joins the cluster: it submits ``python -m atlasloop.training.job RUN_ID``, reads the job's status and
logs, and stops it. What the run is (recipe, gate, resources) and where its data lives (bucket,
topic prefix, the storage service) travel with the job, without secrets; credentials (S3 keys, the
storage token) are in the Ray nodes' own environment, never in a job's request.
"""

from __future__ import annotations

import contextlib
import json
import re

from atlasloop.common.errors import AlreadyExists
from atlasloop.common.ray_rest import JobInfo, RayDashboard
from atlasloop.common.settings import public
from atlasloop.training.settings import TrainingSettings

RUN_SETTINGS_ENV = "ATLASLOOP_TRAINING_RUN_SETTINGS"
ENTRYPOINT = "python -m atlasloop.training.job"
FOR_THE_JOB = {
    "recipe",
    "gate",
    "replay_max_cases",
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "torch_threads",
    "train_storage_path",
    "storage_target",
    "client_tls",
    "s3",
    "kafka",
}


def job_id(run_id: str) -> str:
    return f"atlasloop-{run_id}"


class RunJobs:
    def __init__(self, dashboard: RayDashboard, settings: TrainingSettings) -> None:
        self._dashboard = dashboard
        self._settings = settings

    def submit(self, run_id: str) -> None:
        """Start the run's job; a job submitted for it before (a restart) is left running."""
        carried = {k: v for k, v in public(self._settings).items() if k in FOR_THE_JOB}
        with contextlib.suppress(AlreadyExists):
            self._dashboard.submit_job(
                job_id(run_id),
                f"{ENTRYPOINT} {run_id}",
                env_vars={RUN_SETTINGS_ENV: json.dumps(carried)},
                metadata={"run_id": run_id},
            )

    def status(self, run_id: str) -> JobInfo | None:
        return self._dashboard.job(job_id(run_id))

    def stop(self, run_id: str) -> bool:
        return self._dashboard.stop_job(job_id(run_id))

    def failure(self, run_id: str, info: JobInfo | None) -> str:
        """Why a job ended without recording an outcome, from its status and its log's last error."""
        if info is None:
            return "its Ray job is gone (the cluster was replaced or restarted)"
        try:
            logs = self._dashboard.job_logs(job_id(run_id))
        except Exception:  # noqa: BLE001 - the status alone still says something
            logs = ""
        errors = [line.strip() for line in logs.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception): ", line)]
        cause = errors[-1] if errors else (info.message or "no message")
        return f"its Ray job ended {info.status}: {cause[:400]}"
