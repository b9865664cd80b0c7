"""The reduced loop under faults (``make test-faults``; ``.ci/run`` runs it after ``make test``).

For each seed a fresh stack runs the loop a person would drive: import labelled and unlabelled
cases, wait until the ensemble predicted and scoring scored them, queue them, lease, correct,
submit, approve, and let the approvals trigger a training run. Meanwhile ``Injector`` kills every
service once, stops the broker for 60 s, restarts PostgreSQL and takes S3 away for 30 s, in an
order and at moments drawn from the seed.

The driver is a client that retries what a client may retry (UNAVAILABLE, DEADLINE_EXCEEDED) with
the same request: an upload is made once and the RPC that uses it is repeated, so the services'
idempotency is what is tested, not the driver's bookkeeping. At the end, after the faults:

- every accepted revision is stored exactly once: storage holds one human label version per case,
  the one tracking accepted, and tracking holds one revision for it;
- every case is consistent: storage and tracking know the same cases, each revised case is
  approved with its accepted version current, each other case is scored with an AI version that
  storage holds;
- no event was duplicated in effect: one AI version per case and model set, one approval per case,
  one training run per threshold of approvals; no event is dead-lettered;
- the triggered training run ended (published or rejected), none is left running.

Each seed writes what it injected and what it checked to ``reports/faults/seed-<n>.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from atlasloop.client import Client
from atlasloop.common.service_map import SERVICES
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.volume import save_nifti
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2

from .injector import Injector

pytestmark = [pytest.mark.integration, pytest.mark.faults]

T = TypeVar("T")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
LABELLED, UNLABELLED = ("A", "C"), ("B", "D", "B", "D")
THRESHOLD = 2  # approvals that trigger a fine-tuning run
IMPORT_EVERY_S = 12.0
REPORTS = Path(__file__).resolve().parents[2] / "reports" / "faults"
SETTINGS = {
    "training": {
        "TRIGGERS__APPROVED_THRESHOLD": str(THRESHOLD),
        "RECIPE__EPOCHS": "1",
        "RECIPE__STEPS_PER_EPOCH": "2",
        "RECIPE__BATCH_SIZE": "1",
        "RECIPE__CROP": "32",
        "GATE__REPLAY_EVAL_CASES": "1",
        "NUM_WORKERS": "1",
        "CPUS_PER_WORKER": "1",
        "TORCH_THREADS": "1",
    },
    "inference": {"PREDICT_LABELLED": "false"},
    # an answer lost with a fault leaves a lease nobody submits: it expires and the case is taken again
    "tracking": {"LEASE_S": "90"},
}
TERMINAL = {training_pb2.RUN_STATE_PUBLISHED, training_pb2.RUN_STATE_REJECTED, training_pb2.RUN_STATE_FAILED}


class Driver:
    """The loop's client, retrying what may be retried until ``deadline``; counts its retries."""

    def __init__(self, client: Client, deadline: float) -> None:
        self.client, self.deadline = client, deadline
        self.retries: Counter[str] = Counter()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        while True:
            try:
                return fn()
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if code not in RETRYABLE or time.monotonic() > self.deadline:
                    raise
                self.retries[what] += 1
                time.sleep(1.0)

    def upload(self, path: Path, role: str) -> str:
        return self.call("upload", lambda: upload_file(self.client.storage, path, self.client.auth(role), timeout_s=60))

    def cases(self) -> dict[str, tracking_pb2.CaseSummary]:
        return {c.case_id: c for c in self.call("list cases", self.client.cases)}

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float = 900) -> None:
        until = min(self.deadline, time.monotonic() + timeout_s)
        while not done():
            if time.monotonic() > until:
                raise TimeoutError(f"waited too long for {what}")
            time.sleep(2.0)


class Loop:
    """The reduced loop, one step at a time so that it keeps working while the faults play:
    import the next case, queue the cases scoring has scored, revise and approve one leased case."""

    def __init__(self, driver: Driver, folder: Path, seed: int, work: Path) -> None:
        self.driver, self.seed, self.work = driver, seed, work
        sites = [*LABELLED, *UNLABELLED]
        entries = generate_cohort(folder, len(sites), 100 + seed, sites=sites, scale=0.4)
        self.to_import = [(folder / e["case"], f"s{seed}-{e['case']}", e["site"] in LABELLED) for e in entries]
        self.unlabelled = [case_id for _, case_id, labelled in self.to_import if not labelled]
        self.truth = {case_id: folder for folder, case_id, _ in self.to_import}
        self.imported: list[str] = []
        self.queued: set[str] = set()
        self.accepted: dict[str, tuple[str, str]] = {}  # case -> (revision id, label version)
        self.next_import = 0.0

    @property
    def finished(self) -> bool:
        return not self.to_import and sorted(self.accepted) == sorted(self.unlabelled)

    def step(self) -> None:
        """One import every ``IMPORT_EVERY_S`` (so imports meet the faults), then queue and revise;
        once all is done, keep reading as a viewer would until the faults are over."""
        if self.to_import and time.monotonic() >= self.next_import:
            self.import_next()
            self.next_import = time.monotonic() + IMPORT_EVERY_S
        if self.finished:
            self.read_back()
            return
        self.queue_scored()
        self.revise_one()

    def read_back(self) -> None:
        client, case_id = self.driver.client, self.unlabelled[int(time.monotonic()) % len(self.unlabelled)]
        version = self.accepted[case_id][1]
        labels = self.driver.call("read", lambda: client.labels(case_id, version, role="reviewer"))
        assert labels.array.any()

    def import_next(self) -> None:
        folder, case_id, labelled = self.to_import.pop(0)
        driver, admin = self.driver, self.driver.client.auth("admin")
        ct = driver.upload(folder / "ct.nii.gz", "admin")
        labels = driver.upload(folder / "combined_labels.nii.gz", "admin") if labelled else ""
        request = storage_pb2.ImportCaseRequest(upload_id=ct, case_id=case_id, label_upload_id=labels)
        reply = driver.call("import", lambda: driver.client.storage.ImportCase(request, metadata=admin, timeout=120))
        assert reply.info.case_id == case_id
        self.imported.append(case_id)

    def queue_scored(self) -> None:
        client, known = self.driver.client, self.driver.cases()
        scored = {
            c
            for c in self.unlabelled
            if c not in self.queued and known.get(c) and known[c].state == common_pb2.CASE_STATE_SCORED
        }
        if not scored:
            return
        ranked = self.driver.call("propose", lambda: client.propose_round(1, len(self.truth)))
        chosen = [c for c in ranked if c.case_id in scored]
        if chosen:
            self.driver.call("queue", lambda: client.queue(1, chosen))
            self.queued |= {c.case_id for c in chosen}

    def revise_one(self) -> None:
        """Lease, correct (with the true label), submit and approve one case, if one is queued."""
        client = self.driver.client
        annotator, reviewer = client.auth("annotator"), client.auth("reviewer")
        reply = self.driver.call(
            "next case",
            lambda: client.tracking.NextCase(tracking_pb2.NextCaseRequest(), metadata=annotator, timeout=60),
        )
        if not reply.lease.case_id:  # nothing queued, or held by a lease whose answer was lost
            return
        case_id = reply.lease.case_id
        labels = read_case(self.truth[case_id]).labels
        assert labels is not None
        upload = self.driver.upload(save_nifti(labels, self.work / f"{case_id}-revised.nii.gz"), "annotator")
        request = tracking_pb2.SubmitRevisionRequest(
            lease_id=reply.lease.lease_id, upload_id=upload, seconds_spent=60.0, note="fault injection"
        )
        try:
            revision = self.driver.call(
                "submit", lambda: client.tracking.SubmitRevision(request, metadata=annotator, timeout=120)
            )
        except grpc.RpcError as exc:  # the lease ran out during an outage: the case is taken again
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "expired" in (exc.details() or ""):
                return
            raise
        review = tracking_pb2.SubmitReviewRequest(
            revision_id=revision.revision_id, verdict=tracking_pb2.REVIEW_VERDICT_APPROVE, reason="fault injection"
        )
        self.driver.call("review", lambda: client.tracking.SubmitReview(review, metadata=reviewer, timeout=60))
        self.accepted[case_id] = (revision.revision_id, revision.label_version)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loop_survives_faults(tmp_path, seed):
    stack = Stack(tmp_path / "run", Ports.for_tests(5), private_postgres=True, service_settings=SETTINGS)
    stack.down()
    shutil.rmtree(stack.private_postgres_dir(), ignore_errors=True)
    began = time.monotonic()
    try:
        stack.start_s3()
        stack.seed_models(3.0)  # the bootstrap set on the cohort's grid
        stack.up()
        stack_up_s = time.monotonic() - began
        client = Client(
            {n: stack.service_target(n) for n in SERVICES},
            {r: stack.token_for(r) for r in ("admin", "annotator", "reviewer")},
            timeout_s=120,
        )
        driver = Driver(client, deadline=time.monotonic() + 1500)
        loop = Loop(driver, tmp_path / "cohort", seed, tmp_path)
        injector = Injector(stack, seed)
        injector.start()
        try:
            while not (loop.finished and injector.done.is_set()):
                if time.monotonic() > driver.deadline:
                    raise TimeoutError(f"the loop did not finish: accepted {sorted(loop.accepted)}")
                loop.step()
                time.sleep(1.0)
            injector.join(timeout_s=60)

            def run_ended() -> bool:
                runs = [r for r in driver.call("runs", client.runs) if r.trigger.startswith("approved")]
                return bool(runs) and all(r.state in TERMINAL for r in runs)

            driver.wait("the triggered training run to end", run_ended)
            checks = check_consistency(driver, loop.unlabelled, loop.accepted)
        finally:
            client.close()
        report = {
            "seed": seed,
            "stack_up_s": round(stack_up_s, 1),
            "loop_s": round(time.monotonic() - began - stack_up_s, 1),
            "faults": injector.report(),
            "client_retries": dict(driver.retries),
            "checks": checks,
        }
        REPORTS.mkdir(parents=True, exist_ok=True)
        (REPORTS / f"seed-{seed}.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        assert not [f for f in injector.faults if f.error], injector.report()
        assert sum(driver.retries.values()) > 0, "no fault reached a request: the suite tested nothing"
    finally:
        stack.down()


def check_consistency(driver: Driver, unlabelled: list[str], accepted: dict) -> dict:
    client = driver.client
    checks: dict[str, object] = {}
    known = driver.cases()
    stored = []
    token = ""
    while True:
        page = driver.call(
            "storage cases",
            lambda t=token: client.storage.ListCases(
                storage_pb2.ListCasesRequest(page_size=500, page_token=t), metadata=client.auth("admin"), timeout=60
            ),
        )
        stored += [c.case_id for c in page.cases]
        if not (token := page.next_page_token):
            break
    assert sorted(stored) == sorted(known), "storage and tracking know different cases"
    checks["cases_in_both"] = len(stored)

    assert sorted(accepted) == sorted(unlabelled)
    for case_id in unlabelled:
        revision_id, version = accepted[case_id]
        versions = driver.call("versions", lambda c=case_id: client.label_versions(c, role="reviewer"))
        human = [v.label_version for v in versions if v.source == common_pb2.LABEL_SOURCE_HUMAN]
        assert human == [version], f"{case_id}: human versions {human}, accepted {version}"
        ai = [v for v in versions if v.source == common_pb2.LABEL_SOURCE_AI]
        per_set = Counter(v.model_set for v in ai)
        assert ai and max(per_set.values()) == 1, f"{case_id}: AI versions per model set {dict(per_set)}"
        summary = driver.call("history", lambda c=case_id: client.history(c))
        assert summary.case.state == common_pb2.CASE_STATE_APPROVED, summary.case
        assert summary.case.current_label_version == version
        actions = [h.action for h in summary.history]
        assert actions.count("state:revised->approved") == 1, actions
        assert actions.count("case:ingested") == 1, actions
        revision = driver.call(
            "revision",
            lambda r=revision_id: client.tracking.GetRevision(
                tracking_pb2.GetRevisionRequest(revision_id=r), metadata=client.auth("reviewer"), timeout=60
            ),
        )
        assert revision.label_version == version and revision.case_id == case_id
    checks["accepted_revisions_stored_once"] = len(accepted)

    runs = [r for r in driver.call("runs", client.runs) if r.trigger.startswith("approved")]
    assert runs and all(r.state in TERMINAL for r in runs), [(r.run_id, r.state, r.reason) for r in runs]
    # A run the gate judged consumed its approvals, so judged runs use disjoint ones. A run that
    # failed (its Ray job lost to an injected fault) judged nothing: its approvals wait for the next
    # run, as they must, and may make more runs in all than accepted // THRESHOLD.
    judged = [r for r in runs if r.state in (training_pb2.RUN_STATE_PUBLISHED, training_pb2.RUN_STATE_REJECTED)]
    assert len(judged) <= len(accepted) // THRESHOLD, [(r.run_id, r.state, r.reason) for r in runs]
    checks["approval_runs"] = [training_pb2.RunState.Name(r.state) for r in runs]
    letters = driver.call(
        "dead letters",
        lambda: client.tracking.ListDeadLetters(
            tracking_pb2.ListDeadLettersRequest(include_replayed=True), metadata=client.auth("admin"), timeout=60
        ),
    )
    assert not letters.letters, [(x.origin_topic, x.reason) for x in letters.letters]
    checks["dead_letters"] = 0
    return checks
