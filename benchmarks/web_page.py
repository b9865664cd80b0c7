"""The web page's speed as a person feels it, measured in headless Chromium (issue #22).

A stack of its own (every service and the page, slot 4's ports, a private PostgreSQL) imports
three different 512x512x300 CTs, predicts and scores them, and queues them. In the browser an
annotator signs in and takes the cases one after the other: **first picture** is the time from the
click on "Take the next case" to the three planes drawn with their label overlays (the page's own
``performance.now()``), for a case nothing has cached yet, the median over the cases. After each
first picture the axial slider moves slice by slice: **slice change** is the time from the move to
the new CT picture and label overlay drawn, p50 and p95 over every case's moves, once back to back
(the page's prefetch of the neighbouring slices has no time to finish) and once 200 ms apart, about
as fast as a person reads slices. Beside it, what the first picture waits for on the
server: the case's AI label read as the NIfTI and as storage's display-ready copy, alternately,
medians of five reads each with their peak memory (tracemalloc), and the ratio.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from atlasloop.client import Client, TokenFile
from atlasloop.common.service_map import SERVICES
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.browser import headless_chromium
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.imaging.volume import Volume, save_nifti

SHAPE = (512, 512, 300)
CASES = 3  # an annotator may hold three leases at once (tracking's max_active_leases)
READS = 5
MOVES = 40
PAUSE_S = 0.2  # a person scrolling and reading: about five slices a second


def _ct(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    body = ndimage.zoom(rng.standard_normal((16, 16, 10)), (32, 32, 30), order=1)
    ct = np.clip(body * 150 + rng.normal(0, 15, SHAPE), -1024, 2000).astype(np.int16)
    return save_nifti(Volume(ct, np.diag([0.8, 0.8, 1.0, 1.0])), path)


def _label_reads(client: Client, case_id: str) -> list[str]:
    """The AI label as the NIfTI and as the display copy, alternately; medians and peak memory."""
    ai = common_pb2.LABEL_SOURCE_AI
    [version] = [v.label_version for v in client.label_versions(case_id, role="admin") if v.source == ai]
    ways: dict[str, Callable[[], object]] = {
        "NIfTI (.nii.gz)": lambda: client.labels(case_id, version, role="admin"),
        "display copy (Blosc2)": lambda: client.labels_for_display(case_id, version, role="admin"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    peaks: dict[str, list[int]] = {name: [] for name in ways}
    for _ in range(READS):
        for name, read in ways.items():
            tracemalloc.start()
            started = time.perf_counter()
            read()
            seconds[name].append(time.perf_counter() - started)
            peaks[name].append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    nifti, display = (float(np.median(seconds[name])) for name in ways)
    return [
        *(
            f"label read for the page, {name}: median {np.median(seconds[name]) * 1000:.0f} ms, "
            f"peak {np.median(peaks[name]) / 2**20:.0f} MiB ({READS} reads)"
            for name in ways
        ),
        f"display copy / NIfTI read time: {display / nifti:.2f}",
    ]


def _new_case_ready(browser, before: str | None) -> str | None:
    """The lease id of the case the page shows, once it is not ``before``'s."""
    ready = browser.execute_script("return document.body.dataset.caseReady || null")
    return ready if ready not in (None, before) else None


def _first_picture_requests(browser) -> list[str]:
    """Where the first picture's time went: each kind of request the page made for it, its
    longest wait and when the last one ended, from the browser's resource timings."""
    entries = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.name, e.startTime, e.responseEnd])"
    )
    clicked, first_ms = browser.execute_script(
        "return [window.atlasloop.timings.clickedAt, window.atlasloop.timings.firstPictureMs]"
    )
    kinds: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in entries:
        if start < clicked or end > clicked + first_ms + 1:  # before the click, or the prefetch after
            continue
        path = name.split("?", 1)[0]
        for kind in ("/api/next", "/grid", "/regions", "/image", "/labels"):
            if path.endswith(kind):
                kinds.setdefault(kind.strip("/").replace("api/", ""), []).append((start, end))
    return [
        f"  first picture's {kind} requests: {len(spans)}, longest {max(e - s for s, e in spans):.0f} ms, "
        f"last done {max(e for _, e in spans) - clicked:.0f} ms after the click"
        for kind, spans in kinds.items()
    ]


def latency() -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="atlasloop-bench-web-") as tmp:
        run = Path(tmp) / ".run"
        stack = Stack(run, Ports.for_tests(4), private_postgres=True)
        # the private PostgreSQL keeps its data outside the run folder when run as root: start empty
        shutil.rmtree(stack.private_postgres_dir(), ignore_errors=True)
        try:
            stack.start_s3()
            stack.seed_models(spacing_mm=3.0)
            stack.up()
            stack.start_web()
            tokens = TokenFile(run).by_role()
            client = Client({n: stack.service_target(n) for n in SERVICES}, tokens)
            cases = [f"big-{n + 1}" for n in range(CASES)]
            for n, case_id in enumerate(cases):
                client.import_case(_ct(Path(tmp) / f"{case_id}.nii.gz", n), case_id)
            deadline = time.monotonic() + 1200
            scored = common_pb2.CASE_STATE_SCORED
            while {c.case_id for c in client.cases() if c.state == scored} < set(cases):
                if time.monotonic() > deadline:
                    raise TimeoutError("the benchmark cases were not scored in 20 minutes")
                time.sleep(2)
            client.queue(1, [r for r in client.propose_round(1, 2 * CASES) if r.case_id in cases])
            browser = headless_chromium("the web page's benchmark")
            wait = WebDriverWait(browser, 300)
            first_ms: list[float] = []
            waits: list[str] = []
            moves: dict[float, list[float]] = {0.0: [], PAUSE_S: []}
            slow: list[str] = []
            try:
                browser.get(stack.web_url())
                browser.find_element(By.ID, "token").send_keys(tokens["annotator"])
                browser.find_element(By.ID, "sign-in").click()
                wait.until(lambda _: browser.find_element(By.ID, "next-case").is_displayed())
                lease = None
                for case in range(CASES):
                    browser.execute_script("performance.clearResourceTimings()")  # the buffer holds 250
                    browser.find_element(By.ID, "next-case").click()
                    lease = wait.until(lambda _, before=lease: _new_case_ready(browser, before))
                    first_ms.append(float(browser.execute_script("return window.atlasloop.timings.firstPictureMs")))
                    waits += [f"case {case + 1}:", *_first_picture_requests(browser)]
                    start = int(browser.execute_script("return window.atlasloop.index.axial"))
                    for pause, offset in ((0.0, 1), (PAUSE_S, MOVES + 1)):
                        for step in range(offset, offset + MOVES):
                            time.sleep(pause)
                            ms = float(
                                browser.execute_async_script(
                                    "const done = arguments[arguments.length - 1];"
                                    "window.atlasloop.scrollTo('axial', arguments[0]).then(done);",
                                    start + step,
                                )
                            )
                            moves[pause].append(ms)
                            if ms > 100:
                                way = "back to back" if pause == 0 else "apart"
                                slow.append(f"case {case + 1} move {step} ({way}): {ms:.0f} ms")
            finally:
                browser.quit()
            reads = _label_reads(client, cases[0])
            client.close()
        finally:
            stack.down()
    return [
        *reads,
        *waits,
        f"moves over 100 ms: {len(slow)}",
        *(f"  {line}" for line in slow),
        f"cases {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16, nothing cached, three planes with label overlays",
        f"first picture of a leased case (click to three planes drawn), median of {CASES} cases: "
        f"{np.median(first_ms) / 1000:.2f} s ({', '.join(f'{ms / 1000:.2f}' for ms in first_ms)}; target 1 s)",
        *(
            f"axial slice change (CT picture + label overlay), {len(moves[pause])} moves {label}: "
            f"p50 {np.percentile(moves[pause], 50):.0f} ms, p95 {np.percentile(moves[pause], 95):.0f} ms "
            "(target p95 100 ms)"
            for pause, label in ((0.0, "back to back"), (PAUSE_S, f"{PAUSE_S * 1000:.0f} ms apart, as a person reads"))
        ),
    ]
