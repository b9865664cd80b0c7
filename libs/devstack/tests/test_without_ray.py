"""``atlasloop.devstack.without_ray`` runs a module with Ray unimportable, as the local stack runs
every service: a service that imported Ray would fail at once, not work by accident."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(module: str, tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlasloop.devstack.without_ray", module],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_module_importing_ray_fails_and_one_that_does_not_runs(tmp_path):
    (tmp_path / "uses_ray.py").write_text("import ray.serve\nprint('ran')\n")
    (tmp_path / "no_ray.py").write_text("import json\nprint('ran', __name__)\n")
    refused = _run("uses_ray", tmp_path)
    assert refused.returncode != 0 and "may not import it" in refused.stderr
    ran = _run("no_ray", tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip() == "ran __main__"


def test_every_service_starts_its_imports_without_ray(tmp_path):
    """Each service's ``app`` module (what ``__main__`` builds from) imports with Ray blocked."""
    for service in ("storage", "inference", "scoring", "rendering", "tracking", "training"):
        script = tmp_path / f"check_{service}.py"
        script.write_text(f"import atlasloop.{service}.app\nprint('ok')\n")
        result = _run(f"check_{service}", tmp_path)
        assert result.returncode == 0 and result.stdout.strip() == "ok", (service, result.stderr[-2000:])
