"""The web page's speed as a person feels it, measured in headless Chromium (issue #22).

A stack of its own (every service and the page, slot 4's ports, a private PostgreSQL) imports a
512x512x300 CT, predicts and scores it, and queues it. In the browser an annotator signs in and
takes the case: **first picture** is the time from the click on "Take the next case" to the
three planes drawn with their label overlays (the page's own ``performance.now()``), for a case
nothing has cached yet. Then the axial slider moves slice by slice: **slice change** is the time
from the move to the new CT picture and label overlay drawn, p50 and p95 over the moves, once back
to back (the page's prefetch of the neighbouring slices has no time to finish) and once 200 ms
apart, about as fast as a person reads slices.
"""

from __future__ import annotations

import shutil
import tempfile
import time
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
MOVES = 40
PAUSE_S = 0.2  # a person scrolling and reading: about five slices a second


def _ct(path: Path) -> Path:
    rng = np.random.default_rng(0)
    body = ndimage.zoom(rng.standard_normal((16, 16, 10)), (32, 32, 30), order=1)
    ct = np.clip(body * 150 + rng.normal(0, 15, SHAPE), -1024, 2000).astype(np.int16)
    return save_nifti(Volume(ct, np.diag([0.8, 0.8, 1.0, 1.0])), path)


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
            client.import_case(_ct(Path(tmp) / "ct.nii.gz"), "big-1")
            deadline = time.monotonic() + 900
            while not any(c.case_id == "big-1" and c.state == common_pb2.CASE_STATE_SCORED for c in client.cases()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the benchmark case was not scored in 15 minutes")
                time.sleep(2)
            client.queue(1, [r for r in client.propose_round(1, 5) if r.case_id == "big-1"])
            browser = headless_chromium("the web page's benchmark")
            wait = WebDriverWait(browser, 300)
            try:
                browser.get(stack.web_url())
                browser.find_element(By.ID, "token").send_keys(tokens["annotator"])
                browser.find_element(By.ID, "sign-in").click()
                wait.until(lambda _: browser.find_element(By.ID, "next-case").is_displayed())
                browser.find_element(By.ID, "next-case").click()
                wait.until(lambda _: browser.execute_script("return document.body.dataset.caseReady || null"))
                first_ms = float(browser.execute_script("return window.atlasloop.timings.firstPictureMs"))
                start = int(browser.execute_script("return window.atlasloop.index.axial"))
                moves: dict[float, list[float]] = {0.0: [], PAUSE_S: []}
                for pause, offset in ((0.0, 1), (PAUSE_S, MOVES + 1)):
                    for step in range(offset, offset + MOVES):
                        time.sleep(pause)
                        moves[pause].append(
                            float(
                                browser.execute_async_script(
                                    "const done = arguments[arguments.length - 1];"
                                    "window.atlasloop.scrollTo('axial', arguments[0]).then(done);",
                                    start + step,
                                )
                            )
                        )
            finally:
                browser.quit()
                client.close()
        finally:
            stack.down()
    return [
        f"case {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16, nothing cached, three planes with label overlays",
        f"first picture of a leased case (click to three planes drawn): {first_ms / 1000:.2f} s (target 1 s)",
        *(
            f"axial slice change (CT picture + label overlay), {MOVES} moves {label}: "
            f"p50 {np.percentile(moves[pause], 50):.0f} ms, p95 {np.percentile(moves[pause], 95):.0f} ms "
            "(target p95 100 ms)"
            for pause, label in ((0.0, "back to back"), (PAUSE_S, f"{PAUSE_S * 1000:.0f} ms apart, as a person reads"))
        ),
    ]
