"""The rendering service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

import json
import subprocess
import sys

from atlasloop.rendering.app import build
from atlasloop.rendering.settings import RenderingSettings


def test_spec_serves_rendering_and_checks_its_dependencies():
    spec = build(RenderingSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.rendering.v1.RenderingService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop"]


def test_the_service_process_runs_blas_on_the_threads_its_settings_give():
    """In a process of its own: the limit is process-wide and would slow this test process."""
    script = (
        "import json, numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from atlasloop.rendering.__main__ import limit_blas\n"
        "before = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "limit_blas({threads})\n"
        "print(json.dumps([before, [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']]))\n"
    )
    for threads in (1, 0):
        out = subprocess.run(
            [sys.executable, "-c", script.format(threads=threads)], capture_output=True, text=True, check=True
        )
        before, after = json.loads(out.stdout.strip().splitlines()[-1])
        assert before  # numpy's BLAS is there to limit
        assert after == ([1] * len(before) if threads else before)  # 0 leaves the library's own choice
