"""The ensemble's Serve application, deployed onto the local Ray cluster through the dashboard's
REST API (``PUT /api/serve/applications/``, what ``serve deploy`` sends). On Kubernetes the chart's
RayService carries the same config in ``serveConfigV2``; in both, the inference service only reaches
the application, through Serve's HTTP proxy at ``/<name>/run``.

A Serve config is declarative: applications missing from it are deleted. The stack's default
application and those a test deploys on the same cluster (each with its own bucket and topics)
therefore travel together: ``with_application`` adds or replaces one in the deployed set.
"""

from __future__ import annotations

from typing import Any

APP_NAME = "ensemble"
IMPORT_PATH = "atlasloop.inference.serve_app:app"


def application(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """One ensemble application; ``args`` holds what it does not read from the Ray nodes' environment
    (never a credential)."""
    return {"name": name, "route_prefix": f"/{name}", "import_path": IMPORT_PATH, "args": args}


def serve_config(http_port: int, applications: list[dict[str, Any]]) -> dict[str, Any]:
    """Serve's declarative config: the HTTP proxy on the head node only, on loopback (no gRPC proxy:
    it would bind every interface)."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": applications,
    }


def deployed_applications(details: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The configs of the applications running now, from the dashboard's application details."""
    return [d["deployed_app_config"] for d in details.values() if d.get("deployed_app_config")]


def with_application(deployed: list[dict[str, Any]], app: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in deployed if a["name"] != app["name"]] + [app]


def without_application(deployed: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in deployed if a["name"] != name]
