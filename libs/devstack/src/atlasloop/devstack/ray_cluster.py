"""The local Ray cluster: a head and a second node, each started with ``ray start`` (the second
through ``atlasloop.devstack.ray_node``, which keeps it on loopback), with the dashboard's REST API
on its port. The services reach the cluster only over the network: the inference service through
Serve's HTTP proxy, the training service through the jobs REST API; this module deploys the
ensemble's Serve application the way ``serve deploy`` does.

Each node's environment carries what code on the cluster needs and the services do not hand over:
the S3, Kafka and storage-service settings of the inference and training prefixes (on Kubernetes the
chart gives the Ray pods the same variables from its secret), and the virtual environment first on
``PATH`` so a job's ``python`` is this one.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from atlasloop.common.errors import NotFound, NotReady
from atlasloop.common.ray_env import RAY_ENV
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.devstack.binaries import venv_binary
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.processes import ProcessTable
from atlasloop.devstack.serve_deploy import (
    APP_NAME,
    application,
    deployed_applications,
    serve_config,
    with_application,
    without_application,
)
from atlasloop.devstack.waiting import wait_until

OBJECT_STORE_BYTES = 384 * 1024 * 1024
LOGICAL_CPUS = 2  # per node; two nodes on two cores time-share, as Ray schedules logical CPUs


class RayCluster:
    def __init__(self, processes: ProcessTable, ports: Ports, temp_dir: Path, env: dict[str, str]) -> None:
        self.processes = processes
        self.ports = ports
        self.temp_dir = temp_dir
        self.env = {**env, **RAY_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.dashboard = RayDashboard(self.dashboard_url, timeout_s=30)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ray_dashboard}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.serve_http}"

    def start(self, timeout_s: float = 180) -> None:
        p = self.ports
        common = [
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--num-cpus={LOGICAL_CPUS}",
            "--disable-usage-stats",
        ]
        if not self.processes.running("ray"):
            self.processes.start(
                "ray",
                [
                    venv_binary("ray"),
                    "start",
                    "--head",
                    f"--port={p.ray}",
                    "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={p.ray_dashboard}",
                    f"--ray-client-server-port={p.ray_client}",
                    f"--dashboard-agent-listen-port={p.ray_agent}",
                    f"--min-worker-port={p.ray_workers[0]}",
                    f"--max-worker-port={p.ray_workers[1]}",
                    f"--metrics-export-port={p.ray_metrics}",
                    f"--temp-dir={self.temp_dir}",
                    *common,
                ],
                env=self.env,
            )
        wait_until(
            "Ray head and dashboard",
            lambda: self.dashboard.alive_nodes() >= 1,
            timeout_s,
            self.processes.log_file("ray"),
        )
        if not self.processes.running("ray-node"):
            self.processes.start(
                "ray-node",
                [
                    sys.executable,
                    "-m",
                    "atlasloop.devstack.ray_node",
                    f"--address=127.0.0.1:{p.ray}",
                    f"--dashboard-agent-listen-port={p.ray_node_agent}",
                    f"--min-worker-port={p.ray_node_workers[0]}",
                    f"--max-worker-port={p.ray_node_workers[1]}",
                    f"--metrics-export-port={p.ray_node_metrics}",
                    *common,
                ],
                env=self.env,
            )
        wait_until(
            "the second Ray node",
            lambda: self.dashboard.alive_nodes() >= 2,
            timeout_s,
            self.processes.log_file("ray-node"),
        )

    def deploy_ensemble(self, args: dict[str, Any], name: str = APP_NAME, timeout_s: float = 600) -> None:
        """Deploy (or update in place) one ensemble application, keeping the others, and wait until
        it runs."""
        deployed = deployed_applications(self.dashboard.serve_applications())
        self.dashboard.deploy_serve(
            serve_config(self.ports.serve_http, with_application(deployed, application(name, args)))
        )
        deadline = time.monotonic() + timeout_s
        status = "NOT_STARTED"
        while time.monotonic() < deadline:
            try:
                app = self.dashboard.serve_applications().get(name, {})
            except (NotReady, NotFound):
                app = {}
            status = app.get("status", "NOT_STARTED")
            if status == "RUNNING":
                return
            if status in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise RuntimeError(f"the ensemble application {name} is {status}: {app.get('message', '')[:2000]}")
            time.sleep(1)
        raise TimeoutError(f"the ensemble application {name} is still {status} after {timeout_s:.0f} s")

    def delete_application(self, name: str) -> None:
        """Remove one application (its replicas stop); the others keep running."""
        deployed = deployed_applications(self.dashboard.serve_applications())
        if any(a["name"] == name for a in deployed):
            self.dashboard.deploy_serve(serve_config(self.ports.serve_http, without_application(deployed, name)))
