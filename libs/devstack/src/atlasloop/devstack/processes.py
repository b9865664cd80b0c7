"""Start, find and stop the stack's processes by pid file, never by name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished; only its exit status is left
        return None
    return int(fields[19])


def mentioning_path(path: Path) -> list[int]:
    """Live processes with ``path`` (a folder of this stack's own) or a path under it among their
    arguments, or holding a file under it open. The open files matter: Ray's workers (the Serve
    proxy among them) rewrite their command line to a title such as ``ray::ProxyActor``, but keep
    their log files in the cluster's session folder open."""
    ends = (f"{path}\0".encode(), f"{path}/".encode())
    prefix = f"{path}/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ours = any(end in command for end in ends) or _holds_open(entry, prefix)
        if ours and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _holds_open(process: Path, prefix: str) -> bool:
    """Whether the process (its /proc entry) has a file under ``prefix`` open."""
    try:
        descriptors = list((process / "fd").iterdir())
    except OSError:  # gone, or not ours to look into
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor).startswith(prefix):
                return True
        except OSError:
            continue
    return False


def stop_pids(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: enough to recognise our process after a pid is reused."""

    name: str
    pid: int
    start_time: int
    argv: list[str]
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time


class ProcessTable:
    """Pid files and logs of the processes this stack started, under one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_dir = run_dir / "pids"
        self.log_dir = run_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def record(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self.pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        return ProcessRecord(
            data["name"], data["pid"], data["start_time"], data["argv"], data.get("stop_signal", signal.SIGTERM)
        )

    def running(self, name: str) -> bool:
        record = self.record(name)
        return record is not None and record.alive()

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.pid")) if self.pid_dir.exists() else []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> ProcessRecord:
        """Start ``argv`` in a new session with its output in ``logs/<name>.log``.

        ``stop_signal`` is what asks it to shut down cleanly (PostgreSQL: SIGINT, "fast shutdown",
        because SIGTERM waits for every client to disconnect).
        """
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(name).open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        start_time = _start_time(process.pid)
        if start_time is None:
            raise RuntimeError(f"{name} exited at once; see {self.log_file(name)}")
        record = ProcessRecord(name, process.pid, start_time, list(argv), int(stop_signal))
        self.pid_file(name).write_text(json.dumps(record.__dict__))
        return record

    def stop(self, name: str, grace_s: float = 10.0, sig: int | None = None) -> bool:
        """Signal the process group we started (its stop signal, or ``sig``: SIGKILL to play a
        crash), SIGKILL what is left after ``grace_s``."""
        record = self.record(name)
        if record is None:
            return False
        pgid = record.pid  # started with start_new_session: the leader's pid is the group id
        reused = _start_time(record.pid) is not None and not record.alive()
        # Linux never hands out a pid that is still some live group's id, so while members of
        # group ``pgid`` live (even with the leader gone) they are ours; a reused pid is not.
        if not reused and group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, record.stop_signal if sig is None else sig)
            deadline = time.monotonic() + grace_s
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if group_members(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                while group_members(pgid) and time.monotonic() < deadline + 5:
                    time.sleep(0.1)
        self.pid_file(name).unlink(missing_ok=True)
        return True
