"""The command line installs light: ``atlasloop-cli`` with its libraries, into an empty virtual
environment, brings neither torch nor Ray (nor the services), and the offline commands work there.

Installs from the checkout (not editable) with the project's pinned versions; needs the package
index, as ``make venv`` does.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIGHT = ["libs/common", "libs/method", "libs/client", "libs/cli"]
HEAVY = {
    "torch",
    "ray",
    "monai",
    "atlasloop-models",
    "atlasloop-inference",
    "atlasloop-training",
    "atlasloop-storage",
    "atlasloop-scoring",
    "atlasloop-rendering",
    "atlasloop-tracking",
    "atlasloop-devstack",
}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("cli-venv") / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(REPO / "constraints.txt"),
            *(str(REPO / p) for p in LIGHT),
        ],
        check=True,
        timeout=900,
    )
    return env


def run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin" / "atlasloop"), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_cli_installs_without_torch_ray_or_any_service(cli_env):
    listed = subprocess.run(
        [str(cli_env / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"atlasloop-cli", "atlasloop-common", "atlasloop-method", "atlasloop-client"} <= installed
    assert not installed & HEAVY, installed & HEAVY
    probe = "import importlib.util as u; print([m for m in ('torch', 'ray') if u.find_spec(m)])"
    assert (
        subprocess.run(
            [str(cli_env / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )


def test_the_offline_commands_work_there(cli_env, tmp_path, real_ct_dir):
    synth = run(cli_env, "synth", "--cases", "1", "--out", "cohort", "--seed", "1", "--spacing", "6", cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    labels = next((tmp_path / "cohort").iterdir()) / "combined_labels.nii.gz"
    converted = run(cli_env, "convert", str(real_ct_dir / "example_ct_sm.nii.gz"), "ct.nii.gz", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    inspected = run(cli_env, "inspect", "ct.nii.gz", "--json", cwd=tmp_path)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["shape"] == [122, 101, 30]
    metrics = run(cli_env, "metrics", str(labels), str(labels), "--json", cwd=tmp_path)
    assert metrics.returncode == 0, metrics.stderr
    assert {round(m["dice"], 6) for m in json.loads(metrics.stdout)} == {1.0}
    models = run(cli_env, "models", "list", cwd=tmp_path)
    assert models.returncode != 0 and "pip install 'atlasloop-cli[models]'" in models.stderr


LAYOUT = """
import sys
from pathlib import Path
import numpy as np
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.method.simulate import simulate

labels = load_nifti(sys.argv[1])
out = simulate(labels.array, labels.affine, np.random.default_rng(0))
case = Path("cases/c1")
for member, organs in out.soft.items():
    for organ, crop in organs.items():
        soft = Volume(crop.full(out.shape), labels.affine)
        save_nifti(soft, case / "backbones" / member / "soft_pred" / f"{organ}.nii.gz")
for organ, crop in out.pseudo.items():
    mask = crop.full(out.shape).astype(np.uint8)
    save_nifti(Volume(mask, labels.affine), case / "average" / "segmentations" / f"{organ}.nii.gz")
"""


def test_offline_scoring_works_there(cli_env, tmp_path):
    """``atlasloop score`` on the published scripts' layout, written by the method's own simulator."""
    synth = run(cli_env, "synth", "--cases", "1", "--out", "cohort", "--seed", "2", cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    labels = next((tmp_path / "cohort").iterdir()) / "combined_labels.nii.gz"
    (tmp_path / "layout.py").write_text(LAYOUT)
    subprocess.run([str(cli_env / "bin" / "python"), "layout.py", str(labels)], cwd=tmp_path, check=True, timeout=300)
    scored = run(cli_env, "score", "cases", "--mode", "reference", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    rows = (tmp_path / "cases" / "priority.csv").read_text().splitlines()
    case, *organs = rows[0].split(",")
    assert len(rows) == 1 and case == "c1" and organs  # the organs that need attention, most first
    assert (tmp_path / "cases" / "c1" / "average" / "attention" / f"{organs[0]}.nii.gz").exists()
