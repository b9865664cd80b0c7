"""The chart rendered by the real Helm, as the chart's tests read it, and the settings classes its
environment is read by."""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "atlasloop"
CI = sorted((CHART / "ci").glob("*-values.yaml"))


def render(
    helm: str, values: Path | Sequence[Path] | None = None, *sets: str, api_versions: tuple[str, ...] = ()
) -> list[dict]:
    """``values``: one values file or several, later ones winning; ``sets``: --set items."""
    command = [helm, "template", "atlasloop", str(CHART)]
    for api in api_versions:  # as if the cluster served these APIs (.Capabilities.APIVersions)
        command += ["--api-versions", api]
    for file in [values] if isinstance(values, Path) else values or []:
        command += ["-f", str(file)]
    for item in sets:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def settings_class(component: str):
    module = importlib.import_module(f"atlasloop.{component}.settings")
    return getattr(module, f"{component.title()}Settings")


def pods(documents: list[dict]):
    """(owner kind/name, pod spec) of every workload, Ray head and worker groups included."""
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            yield f"{kind}/{name}", doc["spec"]["template"]["spec"]
        elif kind in ("RayService", "RayCluster"):
            cluster = doc["spec"]["rayClusterConfig"] if kind == "RayService" else doc["spec"]
            yield f"{kind}/{name}/head", cluster["headGroupSpec"]["template"]["spec"]
            for group in cluster["workerGroupSpecs"]:
                yield f"{kind}/{name}/{group['groupName']}", group["template"]["spec"]
