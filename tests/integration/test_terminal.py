"""The loop from a terminal, as a new user meets it (README, "The loop from a terminal"): the real
CT through every service, driven only by the ``atlasloop`` command in subprocesses.

import -> scored -> queue a round -> next -> pull (a folder 3D Slicer opens) -> correct the label
file -> revise (organs and minutes measured) -> review -> stats shows the revision; and the stored
revision is exactly the corrected file.

On the same stack, the same loop in the web page (issue #22), driven in headless Chromium: sign
in, take the case, jump to the top attention region, paint, confirm the suggested error tags and add
one, submit, sign in as the reviewer, approve; the stored revision holds exactly the painted voxels,
the tags are the confirmed ones, and the audit log names the people. Then a second case revised with
the command line leaves the same records: audit entries, event types and fields, label version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from atlasloop.client import Client, TokenFile
from atlasloop.client.tokens import SECOND_READER
from atlasloop.common.service_map import SERVICES
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.imaging.dataset_formats import verify
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.labels import ORGAN_IDS, from_totalsegmentator
from atlasloop.imaging.viewer import check_scene
from atlasloop.imaging.volume import load_nifti, save_nifti

from .conftest import EventCollector
from .observing import CASE_EVENTS

pytestmark = pytest.mark.integration
ATLASLOOP = str(Path(sys.executable).parent / "atlasloop")


@pytest.fixture(scope="module")
def workstation(tmp_path_factory):
    """A folder like a user's checkout after ``make up``: the stack's run folder is ``.run``."""
    home = tmp_path_factory.mktemp("terminal")
    stack = Stack(
        home / ".run",
        Ports.for_tests(2),
        private_postgres=True,
        service_settings={"inference": {"NUM_CPUS": "0.25", "OVERLAP": "0.25"}},
    )
    stack.down()
    shutil.rmtree(stack.private_postgres_dir(), ignore_errors=True)
    try:
        stack.start_s3()
        stack.seed_models(spacing_mm=3.0)  # the real CT's grid: quick predictions of the untrained set
        stack.up()
        env = dict(os.environ) | {f"ATLASLOOP_{n.upper()}_TARGET": stack.service_target(n) for n in SERVICES}
        yield home, env, stack
    finally:
        stack.down()


def atlasloop(home: Path, env: dict[str, str], *args: str, ok: bool = True) -> str:
    done = subprocess.run(
        [ATLASLOOP, *args], cwd=home, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if ok:
        assert done.returncode == 0, f"atlasloop {' '.join(args)}: {done.stderr}"
    return done.stdout


def wait_for(home, env, state: str, timeout_s: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cases = json.loads(atlasloop(home, env, "cases", "--state", state, "--json"))
        if cases:
            return cases
        time.sleep(2)
    raise TimeoutError(f"no case reached {state!r} in {timeout_s:.0f} s")


def test_the_whole_loop_from_a_terminal(workstation, real_ct_dir):
    home, env, stack = workstation
    (home / "scans").mkdir()
    shutil.copy(real_ct_dir / "example_ct_sm.nii.gz", home / "scans" / "abdomen-1.nii.gz")

    # an empty stack says what to do next
    assert "import some with 'atlasloop import DIR'" in atlasloop(home, env, "cases")
    assert "no revisions yet" in atlasloop(home, env, "stats")
    assert all(row["health"] == "SERVING" for row in json.loads(atlasloop(home, env, "status", "--json")))

    assert "imported" in atlasloop(home, env, "import", "scans")
    [case] = wait_for(home, env, "scored")
    assert case["case"] == "abdomen-1" and case["label"] == "ai" and case["model_set"] == "bootstrap"

    assert "queued 1" in atlasloop(home, env, "queue", "--round", "1", "--cases", "1")
    leased = atlasloop(home, env, "next")
    lease_id = re.search(r"^lease (\S+) on case abdomen-1", leased, re.M).group(1)
    assert f"atlasloop pull {lease_id} --out abdomen-1" in leased

    out = atlasloop(home, env, "pull", lease_id, "--out", "abdomen-1")
    assert f"atlasloop revise {lease_id} abdomen-1" in out
    folder = home / "abdomen-1"
    assert check_scene(folder / "scene.mrml") == []
    assert {
        "ct.nii.gz",
        "labels.nii.gz",
        "ai_labels.nii.gz",
        "regions.json",
        "README.txt",
        "scene.mrml",
        "AtlasLoop.ctbl",
        "AtlasLoopHeat.ctbl",
        "attention_liver.nii.gz",
    } <= {p.name for p in folder.iterdir()}
    ct, start = load_nifti(folder / "ct.nii.gz"), load_nifti(folder / "labels.nii.gz")
    assert ct.shape == start.shape == (122, 101, 30)
    assert np.allclose(ct.affine, load_nifti(real_ct_dir / "example_ct_sm.nii.gz").affine)

    # the annotator corrects the liver and the spleen to the reference, nothing else
    reference = from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array)
    corrected = start.array.copy()
    for organ in ("liver", "spleen"):
        label = ORGAN_IDS[organ]
        corrected[corrected == label] = 0
        corrected[reference == label] = label
    save_nifti(start.with_array(corrected), folder / "labels.nii.gz")
    changed = [o for o, k in ORGAN_IDS.items() if not np.array_equal(start.array == k, corrected == k)]

    revised = atlasloop(home, env, "revise", lease_id, "abdomen-1")
    assert f"revising {', '.join(changed)};" in revised and "min since the pull" in revised
    assert "suggested tags:" in revised
    revision_id = re.search(r"^revision (\S+) stored", revised, re.M).group(1)
    assert "case is approved" in atlasloop(home, env, "review", revision_id, "approve")

    stats = json.loads(atlasloop(home, env, "stats", "--json"))
    revised_organs = {row["organ"] for row in stats["organs"] if row["round"] == 1 and row["revised"] == 1}
    assert revised_organs == set(changed) and stats["minutes_per_round"]["1"] >= 0
    [case] = json.loads(atlasloop(home, env, "cases", "--state", "approved", "--json"))
    assert case["label"] == "human"

    # the stored human version is the file the annotator saved, voxel for voxel
    client = Client({n: stack.service_target(n) for n in SERVICES}, TokenFile(home / ".run").by_role())
    try:
        human = [v for v in client.label_versions("abdomen-1") if v.source == common_pb2.LABEL_SOURCE_HUMAN]
        assert len(human) == 1 and human[0].label_version == case["label_version"]
        assert np.array_equal(client.labels("abdomen-1", human[0].label_version).array, corrected)
    finally:
        client.close()

    # the lease is used: a second revise is one line and a non-zero exit
    again = subprocess.run(
        [ATLASLOOP, "revise", lease_id, "abdomen-1"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1


def test_dataset_releases_from_a_terminal(workstation, real_ct_dir, tmp_path):
    """Three new cases (an AbdomenAtlas folder with its labels, a NIfTI, a DICOM series) are
    released in every format, one is revised and approved, and the second release's changelog names
    exactly that case; the first release still writes the same labels afterwards."""
    home, env, stack = workstation
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    reference = from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array)
    scans = home / "release-scans"
    save_nifti(ct.with_array(ct.array[:, :, :24]), scans / "rel-orig" / "ct.nii.gz")
    save_nifti(ct.with_array(reference[:, :, :24]), scans / "rel-orig" / "combined_labels.nii.gz")
    save_nifti(ct.with_array(ct.array[:, :, 3:27]), scans / "rel-ai.nii.gz")
    write_series(ct.with_array(ct.array[:, :, 5:]), scans / "rel-dicom")
    report = json.loads(atlasloop(home, env, "import", str(scans), "--json"))
    assert sorted((r["case_id"], r["status"]) for r in report) == [
        ("rel-ai", "imported"),
        ("rel-dicom", "imported"),
        ("rel-orig", "imported"),
    ]
    deadline = time.monotonic() + 300
    while not {"rel-ai", "rel-dicom"} <= {
        c["case"] for c in json.loads(atlasloop(home, env, "cases", "--state", "scored", "--json"))
    }:  # the cases without labels have their AI label (rel-orig is released with its original)
        assert time.monotonic() < deadline, "the new cases were not scored in 300 s"
        time.sleep(2)

    out = tmp_path / "releases"
    for fmt in ("abdomenatlas", "nnunet", "msd", "dicom-seg"):
        folder = out / f"r1-{fmt}"
        said = json.loads(atlasloop(home, env, "release", "r1", "--out", str(folder), "--format", fmt, "--json"))
        assert said["created"] == (fmt == "abdomenatlas") and said["previous"] == ""
        manifest = json.loads((out / f"r1-{fmt}" / "manifest.json").read_text())
        sources = {c["case_id"]: c["source"] for c in manifest["cases"]}
        assert sources["rel-orig"] == "original" and sources["rel-ai"] == sources["rel-dicom"] == "ai"
        assert verify(out / f"r1-{fmt}") == []
    client = Client({n: stack.service_target(n) for n in SERVICES}, TokenFile(home / ".run").by_role())
    try:
        released = {c["case_id"]: c for c in manifest["cases"]}  # the dicom-seg release
        # the DICOM case's SEG references its own series; the others' their written CT
        dicom = client.case_info("rel-dicom").dicom
        assert released["rel-dicom"]["series_instance_uid"] == dicom.series_instance_uid
        assert not (out / "r1-dicom-seg" / "rel-dicom" / "ct").exists()
        assert (out / "r1-dicom-seg" / "rel-ai" / "ct").is_dir()
        seg = hd.seg.segread(out / "r1-dicom-seg" / "rel-dicom" / "seg.dcm")
        assert {uid for _, _, uid in seg.get_source_image_uids()} == {i.sop_instance_uid for i in dicom.instances}
        stored = client.labels("rel-ai", released["rel-ai"]["label_version"], role="admin").array
        atlas = nib.load(out / "r1-abdomenatlas" / "rel-ai" / "combined_labels.nii.gz")
        assert np.array_equal(np.asarray(atlas.dataobj), stored)
    finally:
        client.close()

    # one of the new cases is revised and approved between the releases
    assert "queued" in atlasloop(home, env, "queue", "--round", "2", "--cases", "3")
    leased = atlasloop(home, env, "next")
    lease_id, case_id = re.search(r"^lease (\S+) on case (\S+)", leased, re.M).groups()
    atlasloop(home, env, "pull", lease_id, "--out", "rel-work")
    labels = load_nifti(home / "rel-work" / "labels.nii.gz")
    painted = labels.array.copy()
    painted[:40, :40, :8] = ORGAN_IDS["liver"]  # the annotator paints a liver the models missed
    assert not np.array_equal(painted, labels.array)
    save_nifti(labels.with_array(painted), home / "rel-work" / "labels.nii.gz")
    revised = atlasloop(home, env, "revise", lease_id, "rel-work", "--organs", "liver", "--tag", "liver:boundary")
    revision_id = re.search(r"^revision (\S+) stored", revised, re.M).group(1)
    atlasloop(home, env, "review", revision_id, "approve")

    said = json.loads(atlasloop(home, env, "release", "r2", "--out", str(out / "r2"), "--format", "nnunet", "--json"))
    assert said["created"] and said["previous"] == "r1"
    changes = json.loads((out / "r2" / "changelog.json").read_text())["changes"]
    assert [(c["case_id"], c["change"], c["to"]["source"]) for c in changes] == [(case_id, "changed", "human")]
    assert changes[0]["error_tags"] == [{"organ": "liver", "tag": "boundary"}]
    assert f"| {case_id} | changed |" in (out / "r2" / "CHANGELOG.md").read_text()
    listed = json.loads(atlasloop(home, env, "releases", "--json"))
    assert [(r["name"], r.get("previous", "")) for r in listed] == [("r1", ""), ("r2", "r1")]

    # a release never changes: r1 again, after the revision, writes the same files
    atlasloop(home, env, "release", "r1", "--out", str(out / "r1-again"), "--format", "nnunet")
    first = json.loads((out / "r1-nnunet" / "manifest.json").read_text())["cases"]
    again = json.loads((out / "r1-again" / "manifest.json").read_text())["cases"]
    assert again == first
    refused = subprocess.run(
        [ATLASLOOP, "release", "r3", "--out", str(out / "r2"), "--format", "msd"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0 and "not empty" in refused.stderr
    assert [r["name"] for r in json.loads(atlasloop(home, env, "releases", "--json"))] == ["r1", "r2"]


def _event_shapes(collector, case_id: str, human_version: str, timeout_s: float = 60) -> list[tuple]:
    """A case's events as their types and the fields they carry (values that name the case or a
    version aside), once its approval has arrived; the revision's event names the stored version."""
    deadline = time.monotonic() + timeout_s
    while True:
        mine = [e for e in list(collector.received) if getattr(e, "case_id", None) == case_id]
        if any(type(e).__name__ == "AnnotationApproved" for e in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    revised = [e for e in mine if type(e).__name__ == "AnnotationRevised"]
    assert len(revised) == 1 and revised[0].label_version == human_version
    unique = {e.meta.event_id: e for e in mine}.values()  # at-least-once delivery: duplicates allowed
    return sorted(
        (type(e).__name__, tuple(sorted(f.name for f, _ in e.ListFields() if f.name != "meta"))) for e in unique
    )


def test_the_loop_in_the_web_page(workstation, real_ct_dir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from atlasloop.common.domain import organ_from_proto
    from atlasloop.devstack.browser import headless_chromium
    from atlasloop.imaging.display import to_ras
    from atlasloop.tracking.v1 import tracking_pb2

    from .reoriented import turned_copy

    home, env, stack = workstation
    stack.start_web()
    tokens = TokenFile(home / ".run").by_role()
    client = Client({n: stack.service_target(n) for n in SERVICES}, tokens)
    collector = EventCollector(stack.kafka_settings(), CASE_EVENTS)
    # a case of its own: the real CT stored turned (axes permuted, two flipped), so the page's
    # pixel-to-voxel mapping is checked off the RAS orientation too; and one the command line
    # revises after it, to hold the two paths' records side by side
    assert (
        client.import_case(turned_copy(real_ct_dir / "example_ct_sm.nii.gz", tmp_path / "turned.nii.gz"), "page-1")
        == "page-1"
    )
    # storage knows a CT it already holds (the terminal test's) as that case: this one differs by a voxel
    scan = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    other = scan.array.copy()
    other[0, 0, 0] += 1
    assert client.import_case(save_nifti(scan.with_array(other), tmp_path / "cli-1.nii.gz"), "cli-1") == "cli-1"
    deadline = time.monotonic() + 300
    while {c.case_id for c in client.cases() if c.state == common_pb2.CASE_STATE_SCORED} < {"page-1", "cli-1"}:
        assert time.monotonic() < deadline, "page-1 and cli-1 were not scored"
        time.sleep(2)
    proposed = {r.case_id: r for r in client.propose_round(7, 20)}
    client.queue(7, [proposed["page-1"]])

    browser = headless_chromium("the web page's browser test")
    wait = WebDriverWait(browser, 120)

    def data(name):
        return browser.execute_script(f"return document.body.dataset.{name} || null")

    shots = Path(
        os.environ.get("ATLASLOOP_SCREENSHOTS", tmp_path / "screenshots")
    )  # docs/images refreshes the README's
    shots.mkdir(parents=True, exist_ok=True)

    def sign_in(token):
        browser.get(stack.web_url())
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "sign-in").click()

    try:
        sign_in(tokens["annotator"])
        wait.until(lambda _: browser.find_element(By.ID, "next-case").is_displayed())
        browser.find_element(By.ID, "next-case").click()
        lease_id = wait.until(lambda _: data("caseReady"))
        regions = browser.execute_script("return window.atlasloop.regions")
        assert regions, "the page lists the case's attention regions"
        browser.find_element(By.CSS_SELECTOR, "#regions li span").click()
        wait.until(lambda _: data("region") == "0")
        assert browser.find_element(By.ID, "organ").get_attribute("value") == regions[0]["organ"]
        centre = [(lo + hi) // 2 for lo, hi in zip(regions[0]["lo"], regions[0]["hi"], strict=True)]
        assert browser.execute_script("return window.atlasloop.index") == {
            "sagittal": centre[0],
            "coronal": centre[1],
            "axial": centre[2],
        }
        axial = browser.find_element(By.CSS_SELECTOR, "canvas[data-plane=axial]")
        ActionChains(browser).move_to_element_with_offset(axial, 3, -2).click().perform()
        painted = dict(browser.execute_script("return [...window.atlasloop.edits.entries()]"))
        assert 0 < len(painted) <= 13  # a disc of radius 2, less what already was that organ
        # the overlay as drawn: the AI label in its organs' colours, the painted voxels (placed by
        # atlasloop.web.volumes' table, axial: i = X-1-c, j = Y-1-r) more opaque
        drawn, base, colours, (nx, ny, nz) = browser.execute_script(
            "const c = document.querySelector('canvas[data-plane=axial]');"
            "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "const s = window.atlasloop;"
            "return [Array.from(px), Array.from(s.base.axial.data), s.organs.map(o => [o.label, o.color]),"
            " s.grid.shape];"
        )
        drawn = np.asarray(drawn, np.uint8).reshape(ny, nx, 4)
        expected = np.zeros((ny, nx, 4), np.uint8)
        colour = {label: rgb for label, rgb in colours}
        for p, label in enumerate(base):
            if label:
                expected[divmod(p, nx)] = [*colour[label], 110]
        at_pixels = []
        for voxel, label in painted.items():
            i, j, k = voxel // (ny * nz), (voxel // nz) % ny, voxel % nz
            assert k == centre[2]
            at_pixels.append((ny - 1 - j, nx - 1 - i))
            expected[at_pixels[-1]] = [*colour[label], 200] if label else 0
        # the region's box is stroked over it (rows Y-1-hi..Y-1-lo, columns X-1-hi..X-1-lo, one pixel
        # outside): its outline, a pixel either way, is left out of the comparison
        (lo_i, lo_j, _), (hi_i, hi_j, _) = regions[0]["lo"], regions[0]["hi"]
        r0, r1, c0, c1 = ny - 1 - hi_j - 1, ny - 1 - lo_j + 1, nx - 1 - hi_i - 1, nx - 1 - lo_i + 1
        rows, cols = np.ogrid[:ny, :nx]
        near = lambda at, a, b: (at >= a - 1) & (at <= b + 1)  # noqa: E731
        outline = (near(rows, r0, r1) & near(cols, c0, c1)) & ~(near(rows, r0 + 3, r1 - 3) & near(cols, c0 + 3, c1 - 3))
        assert outline.sum() < drawn.shape[0] * drawn.shape[1] / 2
        shown, meant = drawn[~outline].astype(int), expected[~outline].astype(int)
        assert np.array_equal(shown[:, 3], meant[:, 3])  # RGB within the canvas's premultiplied rounding
        assert np.abs(shown[:, :3] - meant[:, :3]).max() <= 3
        assert any(not outline[at] for at in at_pixels)  # some painted pixel was compared
        items = browser.find_elements(By.CSS_SELECTOR, "#regions li")
        items[0].find_element(By.CSS_SELECTOR, "button[data-verdict=fixed]").click()
        items[1].find_element(By.CSS_SELECTOR, "button[data-verdict=not_an_error]").click()
        browser.find_element(By.ID, "submit").click()  # the change's suggested tags, to confirm
        wait.until(lambda _: data("tagsReady"))
        browser.save_screenshot(str(shots / "web-annotator.png"))
        boxes = browser.find_elements(By.CSS_SELECTOR, "#tag-list input")
        suggested = {(b.get_attribute("data-organ"), b.get_attribute("value")) for b in boxes if b.is_selected()}
        assert suggested and {organ for organ, _ in suggested} >= {regions[0]["organ"]}
        # the annotator adds a tag of their own to the painted organ
        added = next(b for b in boxes if b.get_attribute("data-organ") == regions[0]["organ"] and not b.is_selected())
        added.click()
        chosen = suggested | {(regions[0]["organ"], added.get_attribute("value"))}
        browser.find_element(By.ID, "confirm-submit").click()
        revision_id = wait.until(lambda _: data("submitted"))

        browser.find_element(By.ID, "sign-out").click()
        wait.until(lambda _: all(c["name"] != "atlasloop_session" for c in browser.get_cookies()))
        sign_in(tokens["reviewer"])
        pending = f"#pending li[data-revision='{revision_id}']"
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, pending))
        browser.find_element(By.CSS_SELECTOR, pending).click()
        wait.until(lambda _: data("reviewReady") == revision_id)
        browser.find_element(By.ID, "reason").send_keys("the painted region is right")
        browser.save_screenshot(str(shots / "web-reviewer.png"))
        browser.find_element(By.ID, "approve").click()
        wait.until(lambda _: data("reviewed") == revision_id)
        browser.find_element(By.ID, "tab-coordinate").click()
        wait.until(lambda _: data("overview") == "2")
        assert browser.find_element(By.ID, "precision").text.startswith("50% of 2 judged regions")
        browser.save_screenshot(str(shots / "web-coordinator.png"))
    finally:
        browser.quit()

    [approved] = [
        r for r in client.revisions(tracking_pb2.REVIEW_STATE_APPROVED) if r.revision.revision_id == revision_id
    ]
    assert approved.revision.case_id == "page-1" and approved.seconds_spent > 0
    before = client.labels("page-1", approved.parent_version, role="reviewer")
    after = client.labels("page-1", approved.revision.label_version, role="reviewer")
    old = np.ascontiguousarray(to_ras(before.array, before.affine).array).ravel()
    new = np.ascontiguousarray(to_ras(after.array, after.affine).array).ravel()
    changed = np.flatnonzero(old != new)
    assert sorted(changed.tolist()) == sorted(painted)  # exactly the painted voxels, nothing else
    assert all(int(new[v]) == label for v, label in painted.items())
    assert np.allclose(after.affine, before.affine) and after.shape == before.shape
    history = [(h.action, h.principal) for h in client.history("page-1").history]
    assert ("state:queued->leased", "dev-annotator") in history
    assert ("state:leased->revised", "dev-annotator") in history
    assert ("state:revised->approved", "dev-reviewer") in history
    assert client.get_lease(lease_id).active is False
    judged = {
        (organ_from_proto(r.organ), r.regions_fixed, r.regions_not_an_error)
        for r in client.statistics().organs
        if r.regions_fixed or r.regions_not_an_error
    }
    first, second = regions[0]["organ"], regions[1]["organ"]
    assert judged == ({(first, 1, 1)} if first == second else {(first, 1, 0), (second, 0, 1)})
    # the tags stored are the ones confirmed in the page, no more
    confirmed = {
        (organ_from_proto(r.organ), tag) for r in client.statistics().organs if r.round == 7 for tag in r.tag_counts
    }
    assert confirmed == chosen

    # the same work through the command line: the same records, event for event
    client.queue(7, [proposed["cli-1"]])
    cli_lease = re.search(r"^lease (\S+) on case cli-1", atlasloop(home, env, "next"), re.M).group(1)
    atlasloop(home, env, "pull", cli_lease, "--out", "cli-1")
    start = load_nifti(home / "cli-1" / "labels.nii.gz")
    reference = from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array)
    corrected = np.where(start.array == ORGAN_IDS["liver"], 0, start.array)
    corrected[reference == ORGAN_IDS["liver"]] = ORGAN_IDS["liver"]
    save_nifti(start.with_array(corrected.astype(start.array.dtype)), home / "cli-1" / "labels.nii.gz")
    revised = atlasloop(home, env, "revise", cli_lease, "cli-1", "--tag", "liver:missed_region")
    cli_revision = re.search(r"^revision (\S+) stored", revised, re.M).group(1)
    assert "case is approved" in atlasloop(home, env, "review", cli_revision, "approve")
    [cli_approved] = [
        r for r in client.revisions(tracking_pb2.REVIEW_STATE_APPROVED) if r.revision.revision_id == cli_revision
    ]
    records = {}
    for case_id, summary in (("page-1", approved), ("cli-1", cli_approved)):
        versions = {v.label_version: v for v in client.label_versions(case_id, role="reviewer")}
        human = versions[summary.revision.label_version]
        assert human.source == common_pb2.LABEL_SOURCE_HUMAN
        assert versions[summary.parent_version].source == common_pb2.LABEL_SOURCE_AI
        history = client.history(case_id).history
        records[case_id] = {
            "history": [(h.action, h.principal) for h in history],
            "events": _event_shapes(collector, case_id, summary.revision.label_version),
            "version": (sorted(f.name for f, _ in human.ListFields()), human.author, human.round, human.model_set),
            "annotator": summary.revision.annotator,
        }
    collector.close()
    assert records["page-1"] == records["cli-1"]

    # a double read in the page: tracking sampled both approved cases for a second reading (its
    # deterministic sample at the default share), which the queue offers only to another annotator;
    # that one reads the case from the AI label, submits without tags, and the coordinator sees both
    # readers' agreement
    for case_id in ("page-1", "cli-1"):
        assert "double_read:queued" in {h.action for h in client.history(case_id).history}
    second_token = TokenFile(home / ".run").token_of_person(SECOND_READER)
    second = Client({n: stack.service_target(n) for n in SERVICES}, {"annotator": second_token})
    # the queue offers cases waiting for revision before double reads: the second annotator holds
    # what the module's other tests left queued (the release test's rel-ai), so the page gets the read
    waiting = client.cases([common_pb2.CASE_STATE_QUEUED])
    held = [second.next_case() for _ in waiting]
    assert all(h is not None and not h.double_read for h in held)
    browser = headless_chromium("the web page's browser test")
    wait = WebDriverWait(browser, 120)
    try:
        sign_in(second_token)
        wait.until(lambda _: browser.find_element(By.ID, "next-case").is_displayed())
        browser.find_element(By.ID, "next-case").click()
        second_lease = wait.until(lambda _: data("caseReady"))
        assert "double read" in browser.find_element(By.ID, "case-info").text
        assert browser.find_element(By.ID, "submit").text == "Submit reading"
        browser.find_element(By.CSS_SELECTOR, "#regions li span").click()
        wait.until(lambda _: data("region") == "0")
        axial = browser.find_element(By.CSS_SELECTOR, "canvas[data-plane=axial]")
        ActionChains(browser).move_to_element_with_offset(axial, 3, -2).click().perform()
        assert browser.execute_script("return window.atlasloop.edits.size") > 0
        browser.find_element(By.ID, "submit").click()  # straight to tracking: no tags step
        second_reading = wait.until(lambda _: data("submitted"))
        assert not browser.find_element(By.ID, "tags-panel").is_displayed()
        browser.find_element(By.ID, "sign-out").click()
        wait.until(lambda _: all(c["name"] != "atlasloop_session" for c in browser.get_cookies()))
        sign_in(tokens["reviewer"])
        browser.find_element(By.ID, "tab-coordinate").click()
        wait.until(lambda _: data("overview"))
        rows = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#organ-table tr")
        ]
    finally:
        browser.quit()
    histories = {c: {(h.action, h.principal) for h in client.history(c).history} for c in ("page-1", "cli-1")}
    [read_case] = [c for c, h in histories.items() if ("double_read:submitted", SECOND_READER) in h]
    assert ("double_read:leased", SECOND_READER) in histories[read_case]
    assert second.get_lease(second_lease).active is False and second_reading
    second.close()
    agreement = {
        organ_from_proto(r.organ): r.double_read_dice
        for r in client.statistics().organs
        if r.double_reads and r.round == 7
    }
    assert agreement and all(0 < dice <= 1 for dice in agreement.values())
    shown = {row[1]: row for row in rows if len(row) == 9 and row[0] == "7" and row[7] == "1"}
    assert set(shown) == set(agreement)
    assert all(float(shown[organ][8]) == pytest.approx(dice, abs=5e-4) for organ, dice in agreement.items())
    client.close()
