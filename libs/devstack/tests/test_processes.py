"""Pid files name exactly the processes we started; stopping takes their whole group."""

from __future__ import annotations

import json
import sys
import time

from atlasloop.devstack.processes import ProcessTable, group_members

# A parent that starts a child in its own process group, like Ray's head does.
PARENT = (
    "import subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_start_records_and_stop_takes_the_group(tmp_path):
    table = ProcessTable(tmp_path)
    record = table.start("sleeper", [sys.executable, "-c", PARENT])
    assert table.running("sleeper")
    assert _wait_for(lambda: len(group_members(record.pid)) == 2)
    assert table.stop("sleeper", grace_s=5)
    assert group_members(record.pid) == []
    assert not table.pid_file("sleeper").exists()
    assert table.stop("sleeper") is False  # idempotent


def test_stop_kills_what_ignores_sigterm(tmp_path):
    table = ProcessTable(tmp_path)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    record = table.start("stubborn", [sys.executable, "-c", code])
    time.sleep(0.3)  # let it install its handler
    started = time.monotonic()
    table.stop("stubborn", grace_s=0.5)
    assert group_members(record.pid) == []
    assert time.monotonic() - started < 5


def test_a_reused_pid_is_never_signalled(tmp_path):
    table = ProcessTable(tmp_path)
    victim = table.start("victim", [sys.executable, "-c", "import time; time.sleep(60)"])
    # Pretend an older run recorded this pid with another start time: it is not ours.
    fake = {"name": "old", "pid": victim.pid, "start_time": victim.start_time - 1, "argv": ["x"]}
    table.pid_file("old").write_text(json.dumps(fake))
    assert not table.running("old")
    table.stop("old")
    assert table.running("victim")
    table.stop("victim")


def test_processes_are_found_by_a_folder_of_our_own_and_stopped(tmp_path):
    """What Ray leaves outside our process groups carries its temp dir; a longer name that only
    begins like it (another stack's) is not ours."""
    import subprocess
    import sys

    from atlasloop.devstack.processes import mentioning_path, stop_pids

    ours = tmp_path / "ray-1"
    theirs = tmp_path / "ray-10"
    script = "import time; time.sleep(60)"
    mine = subprocess.Popen([sys.executable, "-c", script, f"--session-dir={ours}/session_1"])
    other = subprocess.Popen([sys.executable, "-c", script, f"--temp-dir={theirs}"])
    try:
        assert mentioning_path(ours) == [mine.pid]
        stop_pids(mentioning_path(ours), grace_s=5)
        assert mine.wait(5) is not None and other.poll() is None
        assert mentioning_path(ours) == []
    finally:
        for process in (mine, other):
            process.kill()
            process.wait()


def test_processes_holding_a_file_of_our_folder_open_are_found(tmp_path):
    """Ray's workers retitle themselves (``ray::ProxyActor``): their arguments no longer name the
    cluster's folder, but their log files in it stay open."""
    import subprocess
    import sys

    from atlasloop.devstack.processes import mentioning_path

    ours, theirs = tmp_path / "ray-1", tmp_path / "ray-10"
    for folder in (ours, theirs):
        (folder / "logs").mkdir(parents=True)
    holder = (
        "import sys, time; log = open(sys.stdin.readline().strip(), 'a'); print('open', flush=True); time.sleep(60)"
    )
    processes = []
    try:
        for folder in (ours, theirs):
            process = subprocess.Popen(
                [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            process.stdin.write(f"{folder / 'logs' / 'worker.out'}\n")
            process.stdin.flush()
            assert process.stdout.readline().strip() == "open"
            processes.append(process)
        assert mentioning_path(ours) == [processes[0].pid]
    finally:
        for process in processes:
            process.kill()
            process.wait()
