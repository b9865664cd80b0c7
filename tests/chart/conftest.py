"""The tools the chart's tests drive: Helm (``make chart`` fetches it), KubeRay's CRDs (copied into
tests/data/crds) and checkov (``make chart`` installs it in a virtual environment of its own)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .rendering import REPO


@pytest.fixture(scope="session")
def helm() -> str:
    path = os.environ.get("ATLASLOOP_HELM") or str(REPO / ".venv" / "tools" / "helm")
    if not Path(path).exists() and not shutil.which("helm"):
        pytest.fail(f"helm not found at {path}; run 'make chart'")
    return path if Path(path).exists() else str(shutil.which("helm"))


@pytest.fixture(scope="session")
def crds() -> Path:
    path = Path(os.environ.get("ATLASLOOP_CRDS", REPO / "tests" / "data" / "crds" / "kuberay"))
    if not (path / "ray.io_rayservices.yaml").exists():
        pytest.fail(f"KubeRay CRDs not found at {path}; set ATLASLOOP_CRDS")
    return path


@pytest.fixture(scope="session")
def checkov() -> str:
    path = os.environ.get("ATLASLOOP_CHECKOV") or str(REPO / ".venv" / "tools" / "checkov" / "bin" / "checkov")
    if not Path(path).exists():
        pytest.fail(f"checkov not found at {path}; run 'make chart'")
    return path
