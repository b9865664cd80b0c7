"""The Ray cluster over its dashboard's REST API: deploy and read Serve applications, submit, read
and stop jobs, list nodes. Plain HTTP: a process using this never imports Ray and never joins the
cluster as a driver (ARCHITECTURE.md, "Ray is reached over the network, never joined").

The same endpoints are what ``serve deploy``, ``ray job submit`` and KubeRay use; the dashboard
listens on port 8265 by default (KubeRay exposes it as the head service's ``dashboard`` port).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound, NotReady

TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    status: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str
    metadata: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_JOB_STATES


class RayDashboard:
    def __init__(self, url: str, timeout_s: float = 10.0, token: str = "") -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._token = token

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            # Classified on the whole answer: the head wraps its agent's refusal in a traceback
            # (HTTP 500 "... Job with submission_id X already exists"), past any short excerpt.
            body = exc.read(65536).decode(errors="replace")
            detail = body[-500:] if len(body) > 500 else body
            if exc.code == 404:
                raise NotFound(f"Ray dashboard {method} {path}: {detail or 'not found'}") from None
            if exc.code in (400, 409, 500) and "already exists" in body:
                raise AlreadyExists(f"Ray dashboard {method} {path}: {detail}") from None
            if 400 <= exc.code < 500:
                raise InvalidInput(f"Ray dashboard {method} {path}: HTTP {exc.code}: {detail}") from None
            raise NotReady(f"Ray dashboard {method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise NotReady(f"Ray dashboard at {self.url} does not answer ({exc})") from None
        return json.loads(payload) if payload.strip() else None

    # ---- Serve ----

    def deploy_serve(self, config: dict[str, Any]) -> None:
        """Deploy (or update in place) the applications of a Serve config, as ``serve deploy`` does."""
        self._request("PUT", "/api/serve/applications/", config)

    def serve_applications(self) -> dict[str, dict[str, Any]]:
        """Name -> details (``status``: DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, ...)."""
        details = self._request("GET", "/api/serve/applications/") or {}
        return dict(details.get("applications") or {})

    # ---- jobs ----

    def submit_job(
        self,
        submission_id: str,
        entrypoint: str,
        env_vars: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Start a job; AlreadyExists when a job with this id was submitted before."""
        body = {
            "submission_id": submission_id,
            "entrypoint": entrypoint,
            "runtime_env": {"env_vars": env_vars or {}},
            "metadata": metadata or {},
        }
        return str(self._request("POST", "/api/jobs/", body)["submission_id"])

    def job(self, submission_id: str) -> JobInfo | None:
        try:
            info = self._request("GET", f"/api/jobs/{submission_id}")
        except NotFound:
            return None
        return JobInfo(
            submission_id, str(info.get("status", "")), str(info.get("message") or ""), dict(info.get("metadata") or {})
        )

    def stop_job(self, submission_id: str) -> bool:
        """Ask a job to stop; False when it had already ended."""
        return bool(self._request("POST", f"/api/jobs/{submission_id}/stop").get("stopped"))

    def job_logs(self, submission_id: str) -> str:
        return str(self._request("GET", f"/api/jobs/{submission_id}/logs").get("logs", ""))

    # ---- nodes ----

    def alive_nodes(self) -> int:
        summary = self._request("GET", "/nodes?view=summary")["data"]["summary"]
        return sum(1 for node in summary if node.get("raylet", {}).get("state") == "ALIVE")
