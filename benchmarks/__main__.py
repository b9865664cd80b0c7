"""``make bench``: start the benchmark stack on its own ports, run every benchmark, stop it; then
the closed loop (``make demo``'s run on its own stack), which regenerates ``reports/demo``.
``python -m benchmarks --no-demo`` skips the loop (about 15 minutes on two cores)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from benchmarks import (
    hardening,
    imaging,
    inference,
    member_learning_rate,
    overlap,
    rendering,
    scale,
    scoring,
    storage,
    tracking,
    transport,
    web_page,
)
from benchmarks.machine import describe, peak_rss_mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--no-demo", action="store_true", help="skip the closed loop and its report")
    args = parser.parse_args(argv)
    print(f"machine: {describe()}")
    for name, bench in [
        ("hardening: bad-input suite", hardening.bad_inputs),
        ("imaging: cohort", imaging.cohort),
        ("imaging: preprocessing", imaging.preprocessing),
        ("imaging: surface metrics", imaging.surface_metrics),
        ("scoring: speed", scoring.speed),
        ("scoring: error detection", scoring.quality),
        ("inference: sliding-window overlap", overlap.overlap),
        ("training: learning rate per architecture", member_learning_rate.learning_rates),
    ]:
        started = time.perf_counter()
        print(f"\n## {name}")
        for line in bench():
            print(line)
        print(f"({time.perf_counter() - started:.1f} s, peak RSS of this process {peak_rss_mib():.0f} MiB)")
    with tempfile.TemporaryDirectory(prefix="atlasloop-bench-") as run_dir:
        stack = Stack(Path(run_dir), Ports.for_tests(4))
        try:
            stack.start_s3()
            stack.start_kafka()
            stack.start_ray()
            for name, bench in [
                ("object store", transport.object_store),
                ("events", transport.kafka),
                ("storage service", storage.transfer),
                ("tracking load", tracking.load),
                ("rendering", rendering.slices),
                ("inference", inference.ensemble),
                ("scale: control plane over 8,448 cases", scale.control_plane),
            ]:
                started = time.perf_counter()
                print(f"\n## {name}")
                for line in bench(stack):
                    print(line)
                print(f"({time.perf_counter() - started:.1f} s, peak RSS of this process {peak_rss_mib():.0f} MiB)")
        finally:
            stack.down()
    started = time.perf_counter()  # a stack of its own on the same ports, once the one above is down
    print("\n## web page (headless Chromium)")
    for line in web_page.latency():
        print(line)
    print(f"({time.perf_counter() - started:.1f} s, peak RSS of this process {peak_rss_mib():.0f} MiB)")
    if not args.no_demo:  # after the benchmark stack is down: the loop's timings are its own
        from atlasloop.loop.config import DemoConfig
        from atlasloop.loop.demo import run_demo

        started = time.perf_counter()
        print("\n## closed loop (make demo)")
        report = run_demo(Path("reports/demo"), Path(".run/demo"), DemoConfig())
        print(f"report: {report.resolve()}")
        print(f"({time.perf_counter() - started:.1f} s, peak RSS of this process {peak_rss_mib():.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
