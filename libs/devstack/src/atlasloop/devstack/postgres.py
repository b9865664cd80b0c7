"""A private PostgreSQL from pgserver's binaries, for a machine without one (and for the tests
that stop and start the database): initialised once, started as 'nobody' when we are root."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from atlasloop.devstack.binaries import package_file
from atlasloop.devstack.processes import ProcessTable
from atlasloop.devstack.waiting import wait_until

# setpriv execs PostgreSQL itself (no wrapper process), so the pid recorded is the postmaster's and
# the stop signal reaches it directly.
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def url(port: int, database: str = "postgres") -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


def data_dir(run_data: Path, port: int) -> Path:
    """Where the private PostgreSQL keeps its data.

    PostgreSQL refuses to run as root, so as root it runs as 'nobody', which must be able to
    reach its data folder: a run folder inside a private (0700) folder would not do, so the
    data then lives in a folder of its own under the system temp folder, named by port.
    """
    if os.geteuid() != 0:
        return run_data / "postgres"
    base = Path(tempfile.gettempdir()) / "atlasloop-postgres"
    base.mkdir(mode=0o755, exist_ok=True)
    return base / str(port)


def start(processes: ProcessTable, data: Path, port: int, timeout_s: float = 60) -> None:
    """Start it (initialising the data folder the first time) and wait until it answers."""
    if not processes.running("postgres"):
        as_user = AS_NOBODY if os.geteuid() == 0 else []
        bin_dir = binaries(bool(as_user))
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if as_user:
                shutil.chown(data, "nobody")
            processes.log_dir.mkdir(parents=True, exist_ok=True)
            initdb = [
                *as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
            with processes.log_file("postgres-initdb").open("ab") as out:
                subprocess.run(initdb, check=True, stdout=out, stderr=out)
        server = [
            *as_user,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(data),
        ]
        processes.start("postgres", server, stop_signal=signal.SIGINT)
    wait_until("PostgreSQL", lambda: answers(url(port)), timeout_s, processes.log_file("postgres"))


def binaries(as_nobody: bool) -> Path:
    """pgserver's PostgreSQL binaries, where the user PostgreSQL runs as can execute them.

    As root, PostgreSQL runs as 'nobody', which cannot enter a virtual environment inside a
    private (0700) folder. Then the installation is copied once to a world-readable folder under
    the system temp folder, named by pgserver's version, and run from there.
    """
    installed = package_file("pgserver", "pginstall")
    if not as_nobody or _nobody_can_run(installed / "bin" / "postgres"):
        return installed / "bin"
    from importlib.metadata import version

    copy = Path(tempfile.gettempdir()) / f"atlasloop-pgserver-{version('pgserver')}"
    if not (copy / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="atlasloop-pgserver-", dir=tempfile.gettempdir()))
        shutil.copytree(installed, staging / "pginstall", symlinks=True)
        for folder in (staging, staging / "pginstall"):
            folder.chmod(0o755)
        with contextlib.suppress(OSError):  # another process copied it first
            (staging / "pginstall").rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    if not _nobody_can_run(copy / "bin" / "postgres"):
        raise PermissionError(
            f"PostgreSQL must run as 'nobody' when started by root, and 'nobody' cannot run "
            f"{copy / 'bin' / 'postgres'}; make {tempfile.gettempdir()} world-readable or "
            "run as an ordinary user"
        )
    return copy / "bin"


def _nobody_can_run(path: Path) -> bool:
    probe = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "test", "-x", str(path)]
    return subprocess.run(probe, check=False, capture_output=True).returncode == 0


def answers(url: str) -> bool:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True
