"""The layering rules are enforced, not only written: ``lint-imports`` (in ``make lint``) keeps
them on the tree as it is, and breaks on a module that crosses a boundary.

A bad module is added as one more portion of a namespace package (``atlasloop.<name>`` packages
have no ``__init__``, so a folder on ``PYTHONPATH`` joins them), and the project's own contracts are
run against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def bad_module(root: Path, package: str, source: str) -> None:
    folder = root.joinpath(*package.split("."))
    folder.mkdir(parents=True)
    (folder / "crosses_a_boundary.py").write_text(source)


def test_the_tree_keeps_every_contract():
    result = lint()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("package", "source", "broken"),
    [
        (
            "atlasloop.scoring",
            "from atlasloop.training.gate import decide\n",
            "atlasloop.scoring is not allowed to import atlasloop.training",
        ),
        (
            "atlasloop.loop",
            "from atlasloop.tracking.core import TrackingCore\n",
            "atlasloop.loop is not allowed to import atlasloop.tracking",
        ),
        (
            "atlasloop.loop",
            "import atlasloop.inference.serve_app\n",
            "atlasloop.loop is not allowed to import atlasloop.inference",
        ),
        (
            "atlasloop.training",
            "import ray\n",
            "atlasloop.training.crosses_a_boundary -> ray",
        ),
    ],
)
def test_a_module_that_crosses_a_boundary_breaks_the_contracts(tmp_path, package, source, broken):
    bad_module(tmp_path, package, source)
    result = lint(tmp_path)
    assert result.returncode != 0
    assert broken in " ".join(result.stdout.split())
