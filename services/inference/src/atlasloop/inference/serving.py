"""The inference service's link to Ray Serve: connect, deploy (or find) the ensemble, stream
progress, and predict on events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import cast

from atlasloop.common.errors import NotFound, NotReady
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_env import apply_ray_env, join_ray
from atlasloop.inference.settings import InferenceSettings
from atlasloop.models.registry import ModelRegistry

log = logging.getLogger(__name__)
NAMESPACE = "atlasloop"
# Ray reads these when first imported: keep a loopback head on loopback (ARCHITECTURE.md). Set at
# import of this module, before any Ray import in the service's process.
apply_ray_env()


class Serving:
    def __init__(self, settings: InferenceSettings, store: ObjectStore) -> None:
        self.settings = settings
        self.registry = ModelRegistry(store)
        self._lock = threading.Lock()
        self.model_set = ""

    def args(self, model_set: str) -> dict:
        from atlasloop.inference.serve_app import app_args

        return app_args(self.settings, model_set)

    def connect(self) -> None:
        join_ray(self.settings.ray.address, NAMESPACE)

    def deploy(self, model_set: str = "") -> str:
        """Deploy (or redeploy, without downtime: Serve rolls replicas) the ensemble of ``model_set``."""
        from ray import serve

        from atlasloop.inference.serve_app import app

        with self._lock:
            self.connect()
            model_set = model_set or self.settings.model_set or self.registry.current()
            if model_set == self.model_set and self._running():
                return model_set  # Serve replaces replicas on every run: never redeploy the same set
            serve.start(proxy_location="Disabled")
            serve.run(app(self.args(model_set)), name=self.settings.serve_app_name, route_prefix=None)
            self.model_set = model_set
            log.info("ensemble deployed", extra={"model_set": model_set})
            return model_set

    def _running(self) -> bool:
        from ray import serve

        status = serve.status().applications.get(self.settings.serve_app_name)
        return status is not None and status.status == "RUNNING"

    def ready(self) -> None:
        """Readiness: the ensemble application runs (its replicas pass check_health)."""
        self.connect()
        if not self._running():
            raise NotReady(f"ensemble application {self.settings.serve_app_name!r} is not running")

    def predict(self, case_id: str) -> Iterator[dict]:
        from ray import serve

        if not case_id:
            raise NotFound("case id is empty")
        self.connect()
        handle = serve.get_app_handle(self.settings.serve_app_name)
        yield from cast(Iterator[dict], handle.options(stream=True).run.remote(case_id))
