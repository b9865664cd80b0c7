"""The closed loop end to end, on this machine, through the services' public APIs.

1. Start the whole stack (S3, Kafka, PostgreSQL, Ray, six services) on the demo's own ports.
2. Generate a synthetic cohort with four sites; import sites A and C with their labels (the
   "labelled sites") and B and D without (the cases the loop must label).
3. Train the tiny ensemble on the labelled sites (a training run from the original labels); the
   inference service serves the published set and re-predicts the unlabelled cases, scoring
   scores them.
4. Each round: the scoring service proposes the highest-priority cases, tracking queues them, the
   simulated annotator leases each one, looks where the attention regions point, corrects the AI
   label there with the ground truth, tags and times its work; a reviewer approves; the approvals
   trigger fine-tuning; a better set is published; unrevised cases are re-predicted and re-scored.
5. Before the first round, the revision strategies are compared at equal human minutes on the
   same AI labels (see ``evaluation``); after the last, the report is written.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from atlasloop.client import Client
from atlasloop.common import layout
from atlasloop.common.domain import organ_to_proto
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.service_map import SERVICES
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.imaging.compact import EnsembleOutput
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.volume import Volume
from atlasloop.loop import evaluation, judging, releases
from atlasloop.loop.annotator import NativeBox, SimulatedAnnotator, native_box
from atlasloop.loop.config import LABELLED_SITES, UNLABELLED_SITES, DemoConfig, RoundRecord
from atlasloop.loop.demo_stack import fresh_stack, start_stack
from atlasloop.method.improved import offsets_of_set
from atlasloop.training.v1 import training_pb2

log = logging.getLogger(__name__)
COHORT, VIEWER, RELEASES = "cohort", "viewer", "releases"  # the demo's folders under its --out
OUTPUT_FOLDERS = (COHORT, VIEWER, RELEASES)


class Demo:
    def __init__(self, stack: Stack, work: Path, config: DemoConfig, say: Callable[[str], None] = print) -> None:
        self.stack, self.work, self.config, self.say = stack, work, config, say
        self.client = Client(
            {n: stack.service_target(n) for n in SERVICES},
            {r: stack.token_for(r) for r in ("admin", "annotator", "reviewer", "service")},
        )
        self.store = ObjectStore(stack.s3_settings())
        self.truth: dict[str, Volume] = {}
        self.unlabelled: list[str] = []
        self.annotator = SimulatedAnnotator(seed=config.cohort_seed)
        self.rounds: list[RoundRecord] = []
        self.comparison: list[evaluation.Curve] = []
        self.budget_min = 0.0
        self.timings: dict[str, float] = {}
        self.releases: list[dict] = []
        self.offsets: dict[str, float] = {}

    # ---- set-up ----

    def import_cohort(self) -> None:
        c = self.config
        folder = self.work / COHORT
        sites = LABELLED_SITES * (c.labelled_cases // 2) + UNLABELLED_SITES * (c.unlabelled_cases // 2)
        entries = generate_cohort(folder, len(sites), c.cohort_seed, sites=list(sites), scale=c.scale)
        for entry in tqdm(entries, desc="import", unit="case"):
            case = read_case(folder / entry["case"])
            labelled = entry["site"] in LABELLED_SITES
            self.client.import_case(
                folder / entry["case"] / "ct.nii.gz",
                entry["case"],
                labels=folder / entry["case"] / "combined_labels.nii.gz" if labelled else None,
                source=f"synthetic site {entry['site']}",
            )
            if not labelled:
                assert case.labels is not None  # the synthetic cohort writes every case's truth
                self.unlabelled.append(entry["case"])
                self.truth[entry["case"]] = case.labels

    def train(
        self, reason: str, from_originals: bool = False, run_id: str = "", epochs: int = 0, learning_rate: float = 0.0
    ) -> dict:
        run = (
            self.client.run(run_id) if run_id else self.client.start_run(reason, from_originals, epochs, learning_rate)
        )
        with tqdm(desc=f"training {run.run_id}", unit="epoch") as bar:
            for update in self.client.watch(run.run_id):
                if update.epoch:
                    bar.update(1)
                    bar.set_postfix(member=update.architecture, loss=f"{update.loss:.3f}", eta=f"{update.eta_s:.0f}s")
        run = self.client.run(run.run_id)
        state = training_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")
        self.say(f"run {run.run_id}: {state} in {run.seconds:.0f} s ({run.reason})")
        return {
            "run_id": run.run_id,
            "state": state,
            "reason": run.reason,
            "seconds": run.seconds,
            "published": run.published_model_set,
            "trigger": run.trigger,
            "current": {ORGANS[m.organ]: m.dice for m in run.current_metrics},
            "candidate": {ORGANS[m.organ]: m.dice for m in run.candidate_metrics},
            "calibration": [
                {
                    "member": c.architecture,
                    "organ": ORGANS[c.organ],
                    "temperature": c.temperature,
                    "ece_before": c.ece_before,
                    "ece_after": c.ece_after,
                    "held_out": c.held_out,
                    "applied": c.applied,
                    "voxels": c.voxels,
                }
                for c in run.calibration
            ],
        }

    def current_set(self) -> str:
        return str(self.store.get_json(layout.CURRENT_MODEL_SET)["version"])

    def wait_scored(self, cases: list[str], timeout_s: float = 900) -> None:
        """Until every case is predicted with the current set and scored."""
        model_set = self.current_set()
        pending = set(cases)
        with tqdm(total=len(cases), desc=f"predict+score ({model_set})", unit="case") as bar:
            deadline = time.monotonic() + timeout_s
            while pending:
                for case_id in sorted(pending):
                    if self.store.exists(layout.score_index_key(model_set, "improved", case_id)) or self.store.exists(
                        layout.score_index_key(model_set, "reference", case_id)
                    ):
                        pending.discard(case_id)
                        bar.update(1)
                if pending:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"cases not scored with {model_set}: {sorted(pending)}")
                    time.sleep(1)

    # ---- the state of the dataset ----

    def ai_labels(self, cases: list[str]) -> dict[str, Volume]:
        """Each case's newest AI label (the ensemble's current prediction)."""
        labels = {}
        for case_id in cases:
            versions = self.client.label_versions(case_id, role="reviewer")
            ai = [v for v in versions if v.source == common_pb2.LABEL_SOURCE_AI]
            labels[case_id] = self.client.labels(case_id, ai[-1].label_version, role="reviewer")
        return labels

    def dataset_labels(self) -> tuple[dict[str, Volume], dict[str, str]]:
        """Each unlabelled case's current label: its newest human version, else its newest AI one
        (read as the coordinator, a reviewer: an annotator sees only the cases they work on)."""
        labels, sources = {}, {}
        for case_id in self.unlabelled:
            versions = self.client.label_versions(case_id, role="reviewer")
            human = [v for v in versions if v.source == common_pb2.LABEL_SOURCE_HUMAN]
            chosen = (human or versions)[-1]
            labels[case_id] = self.client.labels(case_id, chosen.label_version, role="reviewer")
            sources[case_id] = "human" if human else "ai"
        return labels, sources

    def regions(self, case_id: str, model_set: str, like: Volume, scores=None) -> list[NativeBox]:
        scores = scores or self.client.scores(case_id, model_set)
        return [
            native_box(ORGANS[r.organ], r.box.min_mm, r.box.max_mm, like.affine, like.shape)
            for r in scores.regions
            if r.organ in ORGANS
        ]

    def snapshot(self, round_: int) -> RoundRecord:
        labels, _ = self.dataset_labels()
        record = RoundRecord(
            round_,
            self.current_set(),
            evaluation.organ_quality(labels, self.truth),
            evaluation.mean_dice(labels, self.truth),
        )
        self.say(f"round {round_}: dataset Dice {record.mean_dice:.3f} with {record.model_set}")
        return record

    # ---- the strategies, side by side ----

    def compare_strategies(self, ai: dict[str, Volume]) -> dict:
        model_set = self.current_set()
        candidates = list(self.unlabelled)
        scores = {c: self.client.scores(c, model_set, role="reviewer") for c in candidates}  # one call per case
        attention = evaluation.Plan(
            sorted(candidates, key=lambda c: -scores[c].priority),
            {c: self.regions(c, model_set, ai[c], scores[c]) for c in candidates},
        )
        outputs = {
            c: EnsembleOutput.from_bytes(self.store.get_bytes(layout.ensemble_key(c, model_set))) for c in candidates
        }
        entropy_only = self.config.improved(signals=("binary_entropy",), weights={"mm3": 1.0}, expected_dice_floor=None)
        self.offsets = offsets_of_set(self.store.get_json(layout.model_set_key(model_set)))
        plans = {
            "attention": attention,
            "improved": evaluation.local_plan(ai, outputs, self.config.improved().with_offsets(self.offsets)),
            "improved_uncalibrated": evaluation.local_plan(ai, outputs, self.config.improved()),
            "improved_ungated": evaluation.local_plan(ai, outputs, self.config.improved(expected_dice_floor=None)),
            "uncertainty": evaluation.local_plan(ai, outputs, entropy_only),
            # knows the truth: perfect detection, for comparison, not a strategy
            "oracle": judging.oracle_plan(ai, self.truth),
        }
        self.budget_min = self.round_budget(ai, attention)
        self.comparison = evaluation.compare(ai, self.truth, plans, self.config.seeds, self.budget_min * 2)
        return {
            name: {
                "voxel": asdict(evaluation.detection(ai, self.truth, plan.regions)),
                "case_organ": judging.case_organ(ai, self.truth, plan.regions).as_json(),
                "region": judging.region_level(ai, self.truth, plan.regions).as_json(),
            }
            for name, plan in plans.items()
        }

    def round_budget(self, ai: dict[str, Volume], plan: evaluation.Plan) -> float:
        """The minutes one round of the loop spends: the attention strategy's first ``per_round`` cases."""
        annotator = SimulatedAnnotator(seed=self.config.seeds[0])
        return float(
            sum(
                annotator.revise(ai[c], self.truth[c], plan.regions[c]).minutes
                for c in plan.order[: self.config.per_round]
            )
        )

    # ---- one round of the loop ----

    def revise_round(self, round_: int, record: RoundRecord) -> None:
        model_set = self.current_set()
        # The operator's choice: this project labels the new sites, so of the scoring service's
        # ranking (which also covers the imported labelled cases) it queues the best of those.
        ranked = self.client.propose_round(round_, len(self.unlabelled) + self.config.labelled_cases)
        proposed = [c for c in self.client.queueable(ranked) if c.case_id in self.truth][: self.config.per_round]
        self.client.queue(round_, proposed)
        self.say(f"round {round_}: queued {[c.case_id for c in proposed]}")
        for _ in proposed:
            lease = self.client.next_case()
            if lease is None:
                break
            case_id = lease.lease.case_id
            # what the annotator's viewer opens with: the most salient slices, heatmap and contours
            self.client.salient_slices(case_id, lease.label_version, self.work / VIEWER / case_id, count=3)
            ai = self.client.labels(case_id, lease.label_version)
            revision = self.annotator.revise(ai, self.truth[case_id], self.regions(case_id, model_set, ai))
            tags = [common_pb2.OrganErrorTag(organ=organ_to_proto(o), tag=t.to_proto()) for o, t in revision.tags]
            reply = self.client.submit_revision(
                lease.lease.lease_id,
                revision.labels,
                [organ_to_proto(o) for o in revision.organs],
                tags,
                revision.minutes * 60,
                note="simulated annotator, attention-guided",
            )
            self.client.review(reply.revision_id, approve=True, reason="matches the reference")
            record.minutes += revision.minutes
            record.revised.append(case_id)
            for _organ, tag in revision.tags:
                record.tags[tag.value] = record.tags.get(tag.value, 0) + 1
            self.say(f"  {case_id}: {revision.minutes:.1f} min, organs {revision.organs}")

    def triggered_run(self, after: set[str], timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fresh = [r for r in self.client.runs() if r.run_id not in after and r.trigger.startswith("approved")]
            if fresh:
                return fresh[0].run_id
            time.sleep(1)
        raise TimeoutError("the approvals did not trigger a training run")

    # ---- everything ----

    def run(self) -> dict:
        c = self.config
        started = time.monotonic()
        self.import_cohort()
        self.timings["import"] = time.monotonic() - started
        initial = self.train(
            "initial ensemble on the labelled sites",
            from_originals=True,
            epochs=c.initial_epochs,
            learning_rate=c.initial_learning_rate,
        )
        self.timings["initial_training"] = time.monotonic() - started - self.timings["import"]
        if not self.stack.processes.running("inference"):
            # Started only now: predicting the whole cohort with untrained networks would compete
            # with their training for the two cores and be thrown away. It finds the ingest
            # events waiting in Kafka. The ensemble's Serve application goes onto the Ray cluster
            # first, with the set now current.
            self.stack.deploy_ensemble()
            self.stack.start_service("inference")
            self.stack.wait_service("inference")
        self.wait_scored(self.unlabelled)
        self.timings["first_predictions"] = time.monotonic() - started - sum(self.timings.values())
        for round_ in range(1, c.rounds + 1):
            record = self.snapshot(round_ - 1)
            record.run = initial if round_ == 1 else self.rounds[-1].run
            if round_ == 1:
                ai, _ = self.dataset_labels()
                compared = time.monotonic()
                record.detection = self.compare_strategies(ai)
                self.timings["strategy_comparison"] = time.monotonic() - compared
                self.say(
                    f"strategies compared in {self.timings['strategy_comparison']:.0f} s; "
                    f"one round = {self.budget_min:.1f} min"
                )
            before = {r.run_id for r in self.client.runs()}
            ai_before = self.ai_labels(self.unlabelled)
            if round_ == 1:  # a release of the cohort as the models left it, and one after the revisions
                self.releases.append(releases.release(self.client, "demo-r0", self.work / RELEASES, "before"))
            self.revise_round(round_, record)
            if round_ == 1:
                after = releases.release(self.client, "demo-r1", self.work / RELEASES, "round 1 revised")
                self.releases.append(releases.check_changelog(after, record.revised))
                self.say(
                    f"releases demo-r0 and demo-r1 written in {', '.join(after['formats'])}; the changelog lists "
                    f"{len(after['changes'])} cases, round 1 revised {len(record.revised)}"
                )
            record.run = self.train("", run_id=self.triggered_run(before))
            self.rounds.append(record)
            remaining = [x for x in self.unlabelled if x not in {y for r in self.rounds for y in r.revised}]
            self.wait_scored(remaining)
            truth = {x: self.truth[x] for x in remaining}
            record.model_dice_unrevised_before = evaluation.mean_dice(ai_before, truth)
            record.model_dice_unrevised_after = evaluation.mean_dice(self.ai_labels(remaining), truth)
            self.say(
                f"round {round_}: models on the {len(remaining)} unrevised cases "
                f"{record.model_dice_unrevised_before:.3f} -> {record.model_dice_unrevised_after:.3f} "
                f"({record.run['state']})"
            )
        final = self.snapshot(c.rounds)
        self.rounds.append(final)
        self.timings["total"] = time.monotonic() - started
        stats = self.client.statistics()
        detection = self.rounds[0].detection
        return {
            "config": asdict(c),
            "initial_run": initial,
            "rounds": [_round_json(r) for r in self.rounds[:-1]],
            "snapshots": [asdict(r) for r in self.rounds],
            "detection": {
                **{level: detection["attention"][level] for level in ("case_organ", "region", "voxel")},
                "by_mode": {_MODES.get(name, name): levels for name, levels in detection.items()},
                "definitions": {"matters_dice": judging.MATTERS_DICE, "min_error_ml": judging.MIN_ERROR_ML},
                "expected_dice_offsets": self.offsets,  # the judged set's, which "improved" applies
            },
            "efficiency": judging.efficiency(self.comparison, self.budget_min * 2),
            "comparison": [asdict(curve) for curve in self.comparison],
            "budget_min": self.budget_min,
            "releases": self.releases,
            "timings": self.timings,
            "tag_counts": _tag_counts(stats),
            "minutes_per_round": dict(stats.minutes_per_round),
            "cases": {"labelled": c.labelled_cases, "unlabelled": len(self.unlabelled)},
            "effort": asdict(self.annotator.effort),
        }


_MODES = {"attention": "reference"}


def _round_json(record: RoundRecord) -> dict:
    """One round as other tools read it (``results.json`` ``rounds``)."""
    return {
        "round": record.round + 1,
        "model_set": record.model_set,
        "published": record.run.get("state") == "PUBLISHED",
        "model_dice_unrevised_before": record.model_dice_unrevised_before,
        "model_dice_unrevised_after": record.model_dice_unrevised_after,
        "human_minutes": record.minutes,
        "cases_revised": list(record.revised),
        "run": record.run,
    }


def _tag_counts(stats) -> dict[str, int]:
    counts: dict[str, int] = {}
    for organ in stats.organs:
        for tag, n in organ.tag_counts.items():
            counts[tag] = counts.get(tag, 0) + int(n)
    return counts


def clear_outputs(out: Path) -> None:
    """Make ``out`` ready for a run: the folders an earlier run wrote there go (a release is
    written into a new folder, so a second ``make demo`` failed on the first's); nothing else does."""
    out.mkdir(parents=True, exist_ok=True)
    for own in OUTPUT_FOLDERS:
        shutil.rmtree(out / own, ignore_errors=True)


def run_demo(out: Path, run_dir: Path, config: DemoConfig, ports: Ports | None = None, keep: bool = False) -> Path:
    """Start a fresh stack, run the loop, write the report; returns the report's path."""
    from atlasloop.loop.report import write_report

    stack = fresh_stack(run_dir, ports or Ports.for_demo(), config)
    clear_outputs(out)
    try:
        began = time.monotonic()
        start_stack(stack, config)
        print(f"stack up in {time.monotonic() - began:.0f} s")
        demo = Demo(stack, out, config)
        try:
            results = demo.run()
        finally:
            demo.client.close()
        results["timings"]["stack_up"] = time.monotonic() - began - results["timings"]["total"]
        (out / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
        return write_report(results, out)
    finally:
        if not keep:
            stack.down()


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
