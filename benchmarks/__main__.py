"""``make bench``: start the benchmark stack on its own ports, run every benchmark, stop it."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from benchmarks import imaging, inference, rendering, scale, scoring, storage, tracking, transport
from benchmarks.machine import describe, peak_rss_mib


def main() -> int:
    print(f"machine: {describe()}")
    for name, bench in [("imaging: cohort", imaging.cohort), ("imaging: preprocessing", imaging.preprocessing),
                        ("imaging: surface metrics", imaging.surface_metrics),
                        ("scoring: speed", scoring.speed), ("scoring: error detection", scoring.quality)]:
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
            for name, bench in [("object store", transport.object_store), ("events", transport.kafka),
                                ("storage service", storage.transfer), ("tracking load", tracking.load),
                                ("rendering", rendering.slices), ("inference", inference.ensemble),
                                ("scale: control plane over 8,448 cases", scale.control_plane)]:
                started = time.perf_counter()
                print(f"\n## {name}")
                for line in bench(stack):
                    print(line)
                print(f"({time.perf_counter() - started:.1f} s, peak RSS of this process {peak_rss_mib():.0f} MiB)")
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
