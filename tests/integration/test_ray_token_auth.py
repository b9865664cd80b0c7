"""Ray token authentication, against a real Ray head started with ``RAY_AUTH_MODE=token`` as KubeRay
starts the chart's clusters (authOptions): the dashboard client the inference and training services
use presents the token the chart gives them, and a client without it, or with another, is refused.
That refusal is what keeps a pod that can reach a head from submitting a job that would see the S3
keys and the service tokens in the Ray pods' environment."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.common.ray_env import RAY_ENV
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.devstack.binaries import venv_binary
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.processes import ProcessTable, mentioning_path, stop_pids
from atlasloop.devstack.waiting import wait_until
from atlasloop.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

SLOT = 6  # tests/test_ports.py keeps the slots apart


def test_the_dashboard_serves_the_token_holder_and_refuses_everyone_else(tmp_path, monkeypatch):
    ports = Ports.for_tests(slot=SLOT)
    token = secrets.token_urlsafe(32)
    processes = ProcessTable(tmp_path / "run")
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-auth-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    url = f"http://127.0.0.1:{ports.ray_dashboard}"
    processes.start(
        "ray",
        [
            venv_binary("ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={ports.ray}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports.ray_dashboard}",
            f"--ray-client-server-port={ports.ray_client}",
            f"--dashboard-agent-listen-port={ports.ray_agent}",
            f"--min-worker-port={ports.ray_workers[0]}",
            f"--max-worker-port={ports.ray_workers[1]}",
            f"--metrics-export-port={ports.ray_metrics}",
            f"--temp-dir={temp_dir}",
            "--num-cpus=1",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ],
        env=env,
    )
    try:
        # the training service's client, built from its settings as the chart sets them
        monkeypatch.setenv("ATLASLOOP_TRAINING_RAY_DASHBOARD_URL", url)
        monkeypatch.setenv("ATLASLOOP_TRAINING_RAY_AUTH_TOKEN", token)
        settings = TrainingSettings()
        holder = RayDashboard(settings.ray_dashboard_url, timeout_s=30, token=settings.ray_auth_token)
        wait_until("a Ray head with token auth", lambda: holder.alive_nodes() == 1, 180, processes.log_file("ray"))
        assert holder.job("atlasloop-no-such-run") is None  # the Jobs API answers the holder

        for stranger in (RayDashboard(url, timeout_s=30), RayDashboard(url, timeout_s=30, token="not-" + token)):
            with pytest.raises(InvalidInput, match=r"HTTP 40[13]"):
                stranger.alive_nodes()
            with pytest.raises(InvalidInput, match=r"HTTP 40[13]"):
                stranger.submit_job("atlasloop-intruder", "python -c 'print(1)'")
        assert holder.job("atlasloop-intruder") is None  # nothing was submitted
    finally:
        processes.stop("ray")
        stop_pids(mentioning_path(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
