"""Debian packages the local stack and its tests need (Orthanc and its DICOMweb plugin; Chromium
and its WebDriver for the web page's browser test), installed once.

Idempotent: packages already installed cost one ``dpkg-query``. Missing ones are installed with
``apt-get`` when this process may (root); otherwise the error says the one command to run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

ORTHANC = ("orthanc", "orthanc-dicomweb")
CHROMIUM = ("chromium", "chromium-driver")  # /usr/bin/chromium, /usr/bin/chromedriver


def missing(packages: Sequence[str]) -> list[str]:
    """The packages of ``packages`` that dpkg does not list as installed."""
    absent = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            absent.append(package)
    return absent


def ensure(packages: Sequence[str], why: str) -> None:
    """Install what is missing of ``packages`` (root only), else say what to run."""
    absent = missing(packages)
    if not absent:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *absent]
    if os.geteuid() != 0:
        raise RuntimeError(f"{why} needs the Debian packages {', '.join(absent)}: run 'sudo {' '.join(command)}'")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    if result.returncode != 0:  # the package lists may be stale on a new machine: refresh once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False, timeout=900)
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"installing {', '.join(absent)} failed: {result.stderr.strip()[-500:]}")
    still = missing(absent)
    if still:
        raise RuntimeError(f"apt-get reported success but {', '.join(still)} is not installed")
