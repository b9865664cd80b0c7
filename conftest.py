"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """The real CT examples kept in the repository (``tests/data/real-ct``, see its README);
    ``ATLASLOOP_REAL_CT`` points elsewhere. Missing is a failure, never a skip."""
    path = Path(os.environ.get("ATLASLOOP_REAL_CT", REPO / "tests" / "data" / "real-ct"))
    if not (path / "example_ct_sm.nii.gz").exists():
        pytest.fail(f"real CT examples not found at {path}; set ATLASLOOP_REAL_CT")
    return path
