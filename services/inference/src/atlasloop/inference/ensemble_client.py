"""The inference service's link to the ensemble: Serve's HTTP proxy for runs (``POST /<app>/run``,
JSON lines back), the Ray dashboard's REST API for whether the application runs. No Ray import:
the service reaches the cluster over the network, as any pod would (the Serve application is
deployed by the cluster's owner, not by this service)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping

from google.protobuf import json_format

from atlasloop.common.errors import AlreadyExists, AtlasError, Conflict, InvalidInput, NotFound, NotReady
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.inference.v1 import ensemble_pb2

ERRORS: dict[str, type[AtlasError]] = {
    "NOT_FOUND": NotFound,
    "INVALID_ARGUMENT": InvalidInput,
    "FAILED_PRECONDITION": Conflict,
    "ALREADY_EXISTS": AlreadyExists,
}


class EnsembleClient:
    def __init__(self, url: str, app_name: str, dashboard: RayDashboard, timeout_s: float = 1800.0) -> None:
        self.url = f"{url.rstrip('/')}/{app_name}/run"
        self.app_name = app_name
        self._dashboard = dashboard
        self._timeout_s = timeout_s

    def run(
        self, case_id: str, model_set: str = "", context: Mapping[str, str] | None = None
    ) -> Iterator[ensemble_pb2.RunResponse]:
        """The ensemble's progress messages for one case; pinned to ``model_set`` when given."""
        body = json_format.MessageToJson(
            ensemble_pb2.RunRequest(case_id=case_id, model_set=model_set, trace_context=dict(context or {}))
        )
        request = urllib.request.Request(
            self.url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                for line in response:
                    if not line.strip():
                        continue
                    message = json_format.Parse(line, ensemble_pb2.RunResponse())
                    if message.HasField("error"):
                        raise ERRORS.get(message.error.code, NotReady)(f"ensemble: {message.error.message}")
                    yield message
        except urllib.error.HTTPError as exc:
            raise NotReady(
                f"ensemble at {self.url}: HTTP {exc.code} {exc.read().decode(errors='replace')[:300]}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            raise NotReady(f"ensemble at {self.url} does not answer ({exc})") from None

    def ready(self) -> None:
        """Readiness: the Serve application runs (every replica passed its health check)."""
        status = self._dashboard.serve_applications().get(self.app_name, {}).get("status", "NOT_DEPLOYED")
        if status != "RUNNING":
            raise NotReady(f"ensemble application {self.app_name!r} is {status}")

    def close(self) -> None:
        """Nothing held between runs (one HTTP request each)."""
