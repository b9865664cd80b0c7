"""A reduced closed loop through every service, started by the project's own stack (services that
cannot import Ray, a two-node Ray cluster): a handful of synthetic cases, two rounds of one revision
each, retraining between them. Then each case's events, label versions (storage) and audit entries
(tracking) must tell one consistent story; every service's metrics, scraped while the loop runs,
must have moved; and a revised case's trace must span its import, prediction, scoring and revision."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.ports import Ports
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.dataset_formats import FORMATS
from atlasloop.imaging.schema import BUILTIN, SCHEMA_ENV
from atlasloop.imaging.volume import load_nifti
from atlasloop.loop.config import DemoConfig
from atlasloop.loop.demo import Demo
from atlasloop.loop.demo_stack import fresh_stack, start_stack
from atlasloop.loop.report import write_report

from .conftest import EventCollector
from .observing import MOVING, ROUND_EVENTS, Scraper, case_trace

# Minutes of training each: make test-slow runs them, beside make test, to keep that under 25.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_rounds_tell_one_consistent_story(tmp_path):
    config = DemoConfig.reduced()
    stack = fresh_stack(tmp_path / "run", Ports.for_tests(2), config)
    try:
        start_stack(stack, config)
        collector = EventCollector(stack.kafka_settings(), ROUND_EVENTS)
        demo = Demo(stack, tmp_path / "work", config, say=lambda _: None)
        scraper = Scraper({name: stack.metrics_url(name) for name in [*MOVING, "ray", "ray-node"]})
        try:
            scraper.start()
            results = demo.run()
            scraper.stop()
            collector.wait_for(0, timeout_s=5)
            events = collector.received
            client = demo.client
            revised = [case for r in results["rounds"] for case in r["cases_revised"]]
            assert len(revised) == 2 and len(set(revised)) == 2  # one per round, never the same case twice

            published = [e.model_set for e in events if isinstance(e, events_pb2.ModelPublished)]
            runs = {r.run_id: r for r in client.runs()}
            assert published == [
                r.published_model_set for r in sorted(runs.values(), key=lambda r: r.run_id) if r.published_model_set
            ]
            for case_id in demo.unlabelled:
                mine = [e for e in events if getattr(e, "case_id", None) == case_id]
                kinds = [type(e).__name__ for e in mine]
                versions = client.label_versions(case_id, role="reviewer")
                ai = [v for v in versions if v.source == common_pb2.LABEL_SOURCE_AI]
                human = [v for v in versions if v.source == common_pb2.LABEL_SOURCE_HUMAN]
                predicted = [e for e in mine if isinstance(e, events_pb2.CasePredicted)]
                # Every AI version was announced exactly once, and nothing else was.
                assert sorted(e.label_version for e in predicted) == sorted(v.label_version for v in ai)
                assert len({e.model_set for e in predicted}) == len(predicted)
                assert kinds.count("CaseIngested") == 1
                summary = client.history(case_id)
                actions = [h.action for h in summary.history]
                if case_id in revised:
                    assert len(human) == 1 and human[0].parent_version in {v.label_version for v in ai}
                    approved = [e for e in mine if isinstance(e, events_pb2.AnnotationApproved)]
                    assert [e.label_version for e in approved] == [human[0].label_version]
                    assert summary.case.current_label_version == human[0].label_version
                    assert summary.case.state == common_pb2.CASE_STATE_APPROVED
                    order = [a for a in actions if re.match(r"state:\w+->(queued|leased|revised|approved)$", a)]
                    assert [a.split("->")[1] for a in order] == ["queued", "leased", "revised", "approved"]
                    # No pseudo-label was written over the human one: every AI version is older.
                    assert max(v.created_at.ToDatetime() for v in ai) < human[0].created_at.ToDatetime()
                else:
                    assert not human and summary.case.current_label_version == ai[-1].label_version
                    assert predicted[-1].model_set == demo.current_set()
                assert actions[0] == "case:ingested"

            # Every service answered its metrics port while the loop ran, and its series moved.
            for name, series in MOVING.items():
                assert scraper.scrapes[name] >= 3, f"{name}: {scraper.errors.get(name)}"
                for family, labels in series:
                    before, after = scraper.first(name, family, labels), scraper.last(name, family, labels)
                    assert after > before, f"{name} {family}{labels}: {before} -> {after}"
                assert scraper.has(name, "atlasloop_rpc_duration_seconds_bucket")
            assert scraper.has("tracking", "atlasloop_queue_depth") and scraper.has(
                "tracking", "atlasloop_active_leases"
            )
            assert scraper.has("inference", "atlasloop_event_consumer_lag")
            for node in ("ray", "ray-node"):  # Ray's own, from each node
                assert scraper.scrapes[node] >= 1 and scraper.has(node, "ray_node_cpu_utilization"), node

            # One revised case's trace, from its import to its revision and approval, across services.
            spans = case_trace(stack.traces_dir(), revised[0])
            names = {(s["service"], s["name"]) for s in spans}
            for wanted in [
                ("atlasloop-storage", "import case"),
                ("atlasloop-inference", "predict case"),
                ("atlasloop-scoring", "score case"),
                ("atlasloop-tracking", "revise case"),
                ("atlasloop-tracking", "review revision"),
            ]:
                assert wanted in names, f"{wanted} missing from the trace of {revised[0]}: {sorted(names)}"
        finally:
            scraper.stop()
            collector.close()
            demo.client.close()
        snapshots = results["snapshots"]
        assert [r["round"] for r in snapshots] == [0, 1, 2]
        assert all(0 <= r["mean_dice"] <= 1 for r in snapshots)
        # results.json as other tools read it
        assert [r["round"] for r in results["rounds"]] == [1, 2]
        for r in results["rounds"]:
            assert r["published"] == (r["run"]["state"] == "PUBLISHED") and r["human_minutes"] > 0
            assert 0 <= r["model_dice_unrevised_before"] <= 1 and 0 <= r["model_dice_unrevised_after"] <= 1
            if not r["published"]:  # the same set labels the unrevised cases before and after
                assert r["model_dice_unrevised_after"] == r["model_dice_unrevised_before"]
        detection = results["detection"]
        assert detection["voxel"]["error_voxels"] > 0
        for level in ("case_organ", "region"):
            assert detection[level]["relevant"] > 0 and {"sensitivity", "precision"} <= set(detection[level])
        assert set(detection["by_mode"]) == {
            "reference",
            "improved",
            "improved_uncalibrated",
            "improved_ungated",
            "uncertainty",
            "oracle",
        }
        oracle = detection["by_mode"]["oracle"]["case_organ"]  # boxes around true errors that matter only
        assert oracle["flagged"] == 0 or oracle["precision"] == 1.0
        strategies = {
            "attention",
            "improved",
            "improved_uncalibrated",
            "improved_ungated",
            "uncertainty",
            "oracle",
            "random",
        }
        assert set(results["efficiency"]["median_ratios"]) == strategies
        assert results["efficiency"]["per_seed"][0]["seed"] == 0
        assert "minutes_ratio_attention_vs_random" in results["efficiency"]
        # releases of the cohort before and after round 1's revisions, every format read back
        before, after = results["releases"]
        assert (before["name"], after["name"], after["previous"]) == ("demo-r0", "demo-r1", "demo-r0")
        assert before["cases"] == after["cases"] == len(demo.truth) + demo.config.labelled_cases
        assert after["sources"]["human"] == len(results["rounds"][0]["cases_revised"])
        assert after["sources"]["original"] == before["sources"]["original"] == demo.config.labelled_cases
        for record in (before, after):
            assert {fmt: f["problems"] for fmt, f in record["formats"].items()} == {fmt: [] for fmt in FORMATS}
        assert after["changelog_lists_exactly_the_revised_cases"], after["changes"]
        report = write_report(json.loads(json.dumps(results, default=float)), tmp_path)
        assert "Minutes attention needs / minutes random needs" in report.read_text()
        assert "exactly the" in report.read_text()
    finally:
        stack.down()


def test_a_25_class_project_runs_the_reduced_loop(tmp_path):
    """The reduced loop as an AbdomenAtlas 1.1 project: the demo's command, and every service and
    Ray node it starts, configured with the 25-class schema. The networks predict 26 channels, the
    phantom labels lungs, bowel and duodenum besides the nine organs, and every step (import,
    prediction, scoring, revision with tags, training, releases in each format) carries 1.1 ids."""
    out, run_dir = tmp_path / "out", tmp_path / "run"
    command = [sys.executable, "-m", "atlasloop.loop", "demo", "--reduced", "--port-slot", "2"]
    done = subprocess.run(
        [*command, "--out", str(out), "--run-dir", str(run_dir)],
        env={**os.environ, SCHEMA_ENV: "abdomenatlas-1.1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    schema, nine = BUILTIN["abdomenatlas-1.1"], set(BUILTIN["abdomenatlas-1.0"].names.values())
    beyond = {"duodenum", "intestine", "lung_left", "lung_right"}  # what the phantom draws that 1.1 labels
    assert set(results["snapshots"][0]["quality"]) == nine | beyond  # every structure the truth holds is judged
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    assert all(r["human_minutes"] > 0 and r["cases_revised"] for r in results["rounds"])
    tagged = {t["organ"] for change in results["releases"][1]["changes"] for t in change["error_tags"]}
    assert tagged <= set(schema.names.values()) and tagged & beyond, tagged  # tags travelled as 1.1 ids
    for record in results["releases"]:
        assert {fmt: f["problems"] for fmt, f in record["formats"].items()} == {fmt: [] for fmt in FORMATS}
    release = out / "releases" / "demo-r1-nnunet"
    assert json.loads((release / "dataset.json").read_text())["labels"] == {"background": 0, **schema.ids}
    stored = set().union(*(np.unique(load_nifti(p).array).tolist() for p in (release / "labelsTr").glob("*.nii.gz")))
    assert {schema.ids[name] for name in beyond} <= stored <= {0, *schema.names}
