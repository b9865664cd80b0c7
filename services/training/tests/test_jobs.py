"""A run's Ray job carries what the run is and where its data lives, never a credential, and the
job's side rebuilds the settings with the node's secrets."""

from __future__ import annotations

import json

from pydantic import SecretStr

from atlasloop.common.ray_rest import JobInfo
from atlasloop.common.settings import S3Settings
from atlasloop.training.job import job_settings
from atlasloop.training.jobs import ENTRYPOINT, RUN_SETTINGS_ENV, RunJobs, job_id
from atlasloop.training.recipe import Recipe
from atlasloop.training.settings import TrainingSettings


class _Dashboard:
    """Records what would be sent to the Ray dashboard (the REST client itself is exercised against
    a real cluster in tests/integration/test_training.py)."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []

    def submit_job(self, submission_id, entrypoint, env_vars, metadata):
        self.submitted.append({"id": submission_id, "entrypoint": entrypoint, "env": env_vars, "meta": metadata})

    def job_logs(self, submission_id):
        return "Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n"


def test_a_job_carries_the_run_and_its_data_but_no_secret(monkeypatch):
    settings = TrainingSettings(
        s3=S3Settings(bucket="training-x", secret_key=SecretStr("s3cret")),
        storage_token="service-token",
        storage_target="storage:50051",
        recipe=Recipe(epochs=7),
        num_workers=3,
    )
    dashboard = _Dashboard()
    RunJobs(dashboard, settings).submit("run-1")  # type: ignore[arg-type]
    [job] = dashboard.submitted
    assert job["id"] == job_id("run-1") and job["entrypoint"] == f"{ENTRYPOINT} run-1"
    carried = job["env"][RUN_SETTINGS_ENV]
    assert "s3cret" not in carried and "service-token" not in carried
    assert json.loads(carried)["s3"]["bucket"] == "training-x"

    # on the Ray node: its own secrets, the run's bucket, recipe and resources
    monkeypatch.setenv(RUN_SETTINGS_ENV, carried)
    monkeypatch.setenv("ATLASLOOP_TRAINING_S3__SECRET_KEY", "node-secret")
    monkeypatch.setenv("ATLASLOOP_TRAINING_STORAGE_TOKEN", "node-token")
    rebuilt = job_settings()
    assert rebuilt.s3.bucket == "training-x" and rebuilt.s3.secret_key.get_secret_value() == "node-secret"
    assert rebuilt.storage_token == "node-token" and rebuilt.storage_target == "storage:50051"
    assert rebuilt.recipe.epochs == 7 and rebuilt.num_workers == 3


def test_a_dead_job_is_explained_by_its_last_error():
    jobs = RunJobs(_Dashboard(), TrainingSettings())  # type: ignore[arg-type]
    why = jobs.failure("run-1", JobInfo("atlasloop-run-1", "FAILED", "Job entrypoint command failed", {}))
    assert why == "its Ray job ended FAILED: MemoryError: out of memory"
    assert "gone" in jobs.failure("run-1", None)


def test_a_job_submitted_twice_is_the_same_job_even_when_the_head_answers_500():
    """Ray's head wraps its agent's "already exists" in a long traceback with HTTP 500 (seen in the
    fault-injection suite, where it failed a run whose job was running); the run's own id makes the
    second submission the same job, so it must read as AlreadyExists, which ``submit`` accepts."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import pytest

    from atlasloop.common.errors import AlreadyExists
    from atlasloop.common.ray_rest import RayDashboard

    traceback = "Traceback (most recent call last):\n" + "  File ...\n" * 80
    traceback += "ValueError: Job with submission_id atlasloop-run-1 already exists."

    class Head(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.end_headers()
            self.wfile.write(traceback.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Head)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dashboard = RayDashboard(f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(AlreadyExists):
            dashboard.submit_job("atlasloop-run-1", "python -m x")
        RunJobs(dashboard, TrainingSettings()).submit("run-1")  # accepted: the job runs already
    finally:
        server.shutdown()
