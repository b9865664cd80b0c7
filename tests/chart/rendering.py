"""The chart rendered by the real Helm, as the chart's tests read it."""

from __future__ import annotations

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
