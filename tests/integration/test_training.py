"""The training loop on a two-node local Ray cluster, with services that cannot import Ray: tiny
models, a small synthetic cohort, approved revisions arriving as events trigger a run, which is a
Ray job (Ray Train fine-tuning, the gate's evaluation in Ray tasks, publishing, all on the cluster).
Approvals come from the real tracking service (lease, revision, review); an approval event that
tracking did not record is refused, and an approved label that cannot be loaded is quarantined.
The training service is killed in the middle of the run and started again: it re-attaches to the
job, and the run completes once and publishes once. The inference service serves the published set
for the next prediction. Around it: a run with nothing new fails cleanly, requests during a run
queue one follow-up (which survives the restart), WatchRun streams progress, a cancelled run fails
with who cancelled it, and a rollback makes the earlier set current again."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import numpy as np
import pytest
import torch

from atlasloop.client import Client
from atlasloop.client.tokens import TokenFile
from atlasloop.common import events, layout
from atlasloop.common.domain import organ_from_proto, organ_to_proto
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.service_map import SERVICES
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import load_nifti, save_nifti
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc
from atlasloop.method.improved import OFFSET_BOUND
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

from .conftest import EventCollector, isolated, running_services

# Minutes of training each: make test-slow runs them, beside make test, to keep that under 25.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = training_pb2
ENDED = (S.RUN_STATE_PUBLISHED, S.RUN_STATE_REJECTED, S.RUN_STATE_FAILED)
TRAINING = {
    "TRIGGERS__APPROVED_THRESHOLD": "2",
    "GATE__MARGIN": "0.2",
    "GATE__REPLAY_EVAL_CASES": "0",
    "RECIPE__EPOCHS": "4",
    "RECIPE__STEPS_PER_EPOCH": "10",
    "RECIPE__BATCH_SIZE": "2",
    "RECIPE__CROP": "48",
    "RECIPE__LEARNING_RATE": "0.003",
    "NUM_WORKERS": "2",
    "CPUS_PER_WORKER": "0.5",
    "JOB_POLL_S": "0.5",
}


def _import(stub, tmp_path, case_id: str, seed: int, labelled: bool, admin):
    ct, labels = render(np.random.default_rng([seed, 0]), SITES["A"], 3.0, scale=0.5)
    ct_path = save_nifti(ct, tmp_path / f"{case_id}-ct.nii.gz")
    label_path = save_nifti(labels, tmp_path / f"{case_id}-labels.nii.gz")
    label_upload = upload_file(stub, label_path, admin) if labelled else ""
    stub.ImportCase(
        storage_pb2.ImportCaseRequest(
            upload_id=upload_file(stub, ct_path, admin), case_id=case_id, label_upload_id=label_upload
        ),
        metadata=admin,
    )
    return label_path


def _wait_run(stub, run_id: str, admin, timeout_s: float = 600) -> S.Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = stub.GetRun(S.GetRunRequest(run_id=run_id), metadata=admin).run
        if run.state in ENDED:
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not end")


def _restart_training(stack) -> training_pb2_grpc.TrainingServiceStub:
    stack.start_service("training")
    stack.wait_service("training")
    return training_pb2_grpc.TrainingServiceStub(grpc.insecure_channel(stack.service_target("training")))


def test_approved_revisions_train_gate_publish_and_serve_across_a_restart(stack, fresh_database, unique, tmp_path):
    stack.start_ray()
    admin = [("authorization", f"Bearer {stack.token_for('admin')}")]
    svc = [("authorization", f"Bearer {stack.token_of_service('inference')}")]
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"t{unique}."})
    s3 = stack.s3_settings(bucket=f"training-{unique}")
    store = ObjectStore(s3)
    store.check_bucket()
    registry = ModelRegistry(store)
    for seed, architecture in enumerate(("unet", "dynunet")):
        torch.manual_seed(seed)
        registry.register(
            architecture,
            "tiny",
            state_dict_bytes(build(config(architecture, "tiny"))),
            {"bootstrap": "untrained"},
            version="v0",
        )
    registry.create_set([("unet", "v0"), ("dynunet", "v0")], make_current=True, version="ms-0")
    app_name = f"ensemble-{unique}"
    stack.ray.deploy_ensemble(
        {"s3": {"bucket": s3.bucket}, "kafka": {"topic_prefix": kafka.topic_prefix}, "follow_s": 1.0}, name=app_name
    )
    common = isolated(s3.bucket, kafka.topic_prefix)
    settings = {
        "storage": common,
        "inference": common | {"SERVE_APP_NAME": app_name},
        "tracking": common | {"DATABASE__URL": fresh_database.url, "DOUBLE_READ_FRACTION": "0"},
        "training": common | TRAINING,
    }
    collector = EventCollector(
        kafka,
        [
            events_pb2.CasePredicted,
            events_pb2.TrainingRequested,
            events_pb2.TrainingProgress,
            events_pb2.TrainingCompleted,
            events_pb2.ModelPublished,
        ],
    )
    try:
        with running_services(stack, ["storage", "inference", "tracking", "training"], settings) as channels:
            _the_loop(stack, channels, collector, registry, store, kafka, tmp_path, admin, svc)
    finally:
        collector.close()
        stack.ray.delete_application(app_name)


def _approve(client: Client, producer, truth: dict, case_ids: list[str], round_: int, model_set: str) -> dict[str, str]:
    """What an annotator and a reviewer do: the case is scored and queued, an annotator leases it
    and submits the ground truth as the revision, a reviewer approves it. Tracking publishes
    ``annotation.approved``. Returns case id -> revision id."""
    for case_id in case_ids:  # the scoring service's event, as it would publish it
        producer.publish(
            events_pb2.CaseScored(meta=events.new_meta("scoring"), case_id=case_id, model_set=model_set, priority=1.0),
            key=case_id,
        )
    deadline = time.monotonic() + 60
    while not set(case_ids) <= {c.case_id for c in client.cases([common_pb2.CASE_STATE_SCORED])}:
        assert time.monotonic() < deadline, "tracking never saw the cases scored"
        time.sleep(0.5)
    queued = [tracking_pb2.QueuedCase(case_id=c, priority=1.0, organs=[organ_to_proto("liver")]) for c in case_ids]
    reply = client.tracking.QueueCases(
        tracking_pb2.QueueCasesRequest(round=round_, cases=queued), metadata=client.auth("admin")
    )
    assert reply.queued == len(case_ids)
    revisions = {}
    for _ in case_ids:
        lease = client.next_case()
        assert lease is not None
        case_id = lease.lease.case_id
        revision = client.submit_revision(
            lease.lease.lease_id, load_nifti(truth[case_id], labels=True), [organ_to_proto("liver")], [], 60.0
        )
        client.review(revision.revision_id, approve=True)
        revisions[case_id] = revision.revision_id
    assert sorted(revisions) == sorted(case_ids)
    return revisions


def _the_loop(stack, channels, collector, registry, store, kafka, tmp_path, admin, svc):
    storage_stub = storage_pb2_grpc.StorageServiceStub(channels["storage"])
    stub = training_pb2_grpc.TrainingServiceStub(channels["training"])
    client = Client({n: stack.service_target(n) for n in SERVICES}, TokenFile(stack.run_dir).by_role(), 120)
    truth = {}
    for index, labelled in enumerate((True, True, False, False, False)):  # c0, c1 come with labels
        truth[f"c{index}"] = _import(storage_stub, tmp_path, f"c{index}", index, labelled, admin)
    predicted = [e for e in collector.wait_for(5, timeout_s=400) if isinstance(e, events_pb2.CasePredicted)]
    assert sorted(e.case_id for e in predicted) == ["c0", "c1", "c2", "c3", "c4"]

    # Nothing approved yet: a manual run fails with the reason, and nothing is published.
    empty = stub.StartRun(S.StartRunRequest(reason="too early"), metadata=admin).run
    empty = _wait_run(stub, empty.run_id, admin, 120)
    assert empty.state == S.RUN_STATE_FAILED and "no approved revisions" in empty.reason
    assert registry.current() == "ms-0"

    # Anyone who can reach the broker can publish an approval; training asks tracking, which never
    # recorded these, so they count for nothing: no run is triggered, even past the threshold.
    producer = events.EventProducer(kafka, "test")
    for case_id in ("c3", "c4"):
        producer.publish(
            events_pb2.AnnotationApproved(
                meta=events.new_meta("tracking"),
                case_id=case_id,
                revision_id=f"forged-{case_id}",
                label_version="v-forged",
                organs=[organ_to_proto("liver")],
            ),
            key=case_id,
        )

    # Two real approvals (the ground truth of c2 and c3, submitted and approved through tracking),
    # one of them redelivered: the threshold of two fires one run.
    revisions = _approve(client, producer, truth, ["c2", "c3"], 1, "ms-0")
    redelivered = events_pb2.AnnotationApproved(
        meta=events.new_meta("tracking"),
        case_id="c2",
        revision_id=revisions["c2"],
        label_version=client.tracking.GetRevision(
            tracking_pb2.GetRevisionRequest(revision_id=revisions["c2"]), metadata=client.auth("admin")
        ).label_version,
        organs=[organ_to_proto("liver")],
    )
    producer.publish(redelivered, key="c2")  # still one approval
    deadline = time.monotonic() + 60
    while not (runs := stub.ListRuns(S.ListRunsRequest(), metadata=admin).runs)[0].trigger.startswith("approved"):
        assert time.monotonic() < deadline, "no run was triggered"
        time.sleep(0.5)
    run_id = runs[0].run_id
    assert runs[0].trigger == "approved>=2"
    follow_ups = {
        stub.StartRun(S.StartRunRequest(reason=f"impatient {i}"), metadata=admin).run.run_id for i in range(3)
    }
    assert len(follow_ups) == 1 and run_id not in follow_ups  # one follow-up, joined by the others

    # The training service dies in the middle of the run (SIGKILL: no goodbye) and comes back.
    deadline = time.monotonic() + 300
    while not [e for e in collector.received if isinstance(e, events_pb2.TrainingProgress) and e.run_id == run_id]:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.5)
    assert stack.processes.stop("training", grace_s=0, sig=signal.SIGKILL)
    stub = _restart_training(stack)
    watched: list = []
    watcher = threading.Thread(
        target=lambda: watched.extend(stub.WatchRun(S.WatchRunRequest(run_id=run_id), metadata=admin, timeout=600)),
        daemon=True,
    )
    watcher.start()

    run = _wait_run(stub, run_id, admin)
    assert run.state == S.RUN_STATE_PUBLISHED, run.reason
    assert run.published_model_set == f"set-{run_id}" and registry.current() == run.published_model_set
    before = {m.organ: m.dice for m in run.current_metrics}
    after = {m.organ: m.dice for m in run.candidate_metrics}
    print(f"\nrun {run.seconds:.1f} s; Dice before {before}; after {after}")
    assert sum(after.values()) > sum(before.values())
    trained_on = {v.split("/")[0] for v in run.label_versions}
    assert trained_on & {"c2", "c3"}
    assert not [v for v in run.label_versions if "forged" in v]  # the forged approvals never counted
    provenance = registry.manifest("unet", run_id).provenance
    assert provenance["run_id"] == run_id and provenance["base_model_set"] == "ms-0"
    assert provenance["label_versions"] == list(run.label_versions)
    # each member records the rate it trained at: the recipe's times its architecture's factor
    recipe = provenance["recipe"]
    for architecture in ("unet", "dynunet"):
        rate = registry.manifest(architecture, run_id).provenance["learning_rate"]
        assert rate == recipe["learning_rate"] * recipe["learning_rate_scale"].get(architecture, 1.0)
    # each published member carries the temperatures fitted on the revisions the gate kept aside
    assert {c.architecture for c in run.calibration} == {"unet", "dynunet"}
    for c in run.calibration:
        assert 0.05 <= c.temperature <= 20 and c.voxels > 0 and 0 <= c.ece_after <= 1
        published = registry.manifest(c.architecture, run_id).temperatures.get(organ_from_proto(c.organ))
        # applied only where measured out of sample and lower; elsewhere the organ keeps T = 1
        assert c.applied == (c.held_out and c.ece_after < c.ece_before)
        assert published == (c.temperature if c.applied else None)
    # the set carries the expected-Dice offsets its run fitted on the same held-out cases
    record = store.get_json(layout.run_key(run_id))
    offsets = registry.model_set(run.published_model_set).expected_dice_offsets
    assert offsets == record["expected_dice_offsets"] and set(offsets) <= set(ORGANS.values())
    assert {organ_from_proto(o.organ): o.offset for o in run.expected_dice_offsets} == offsets  # and the API's
    assert all(abs(v) <= OFFSET_BOUND for v in offsets.values())
    print(f"expected-Dice offsets on {len(record['held_out']) + len(record['site_held_out'])} held-out: {offsets}")

    watcher.join(60)
    assert watched and watched[-1].state == S.RUN_STATE_PUBLISHED
    epochs = [(w.architecture, w.epoch) for w in watched if w.epoch]
    all_epochs = [(a, e) for a in ("unet", "dynunet") for e in range(1, 5)]
    assert epochs == all_epochs[len(all_epochs) - len(epochs) :]  # the epochs after the restart, in order, once
    assert all(w.loss > 0 and w.eta_s >= 0 for w in watched if w.epoch)

    follow_up = _wait_run(stub, follow_ups.pop(), admin, 180)  # queued before the crash, run after it
    assert follow_up.state == S.RUN_STATE_FAILED and "no approved revisions" in follow_up.reason
    assert "impatient 0" in follow_up.trigger and "impatient 2" in follow_up.trigger

    # The inference service serves the new set and re-predicts the case still labelled by AI.
    new_set = run.published_model_set
    deadline = time.monotonic() + 300
    while not [e for e in collector.received if isinstance(e, events_pb2.CasePredicted) and e.model_set == new_set]:
        assert time.monotonic() < deadline, "no prediction with the new set"
        time.sleep(1)
    repredicted = [
        e.case_id for e in collector.received if isinstance(e, events_pb2.CasePredicted) and e.model_set == new_set
    ]
    assert repredicted == ["c4"]  # c0, c1 have original labels; c2, c3 human revisions
    inference_stub = inference_pb2_grpc.InferenceServiceStub(channels["inference"])
    steps = list(inference_stub.Predict(inference_pb2.PredictRequest(case_id="c4"), metadata=svc, timeout=120))
    assert steps[-1].ensemble_finished.model_set == new_set

    # Across the crash: one completion and one publication of the run, every epoch announced once.
    completed = [e for e in collector.received if isinstance(e, events_pb2.TrainingCompleted)]
    assert [(e.run_id, e.passed_gate) for e in completed if e.run_id == run_id] == [(run_id, True)]
    progress = [
        (e.architecture, e.epoch)
        for e in collector.received
        if isinstance(e, events_pb2.TrainingProgress) and e.run_id == run_id
    ]
    assert sorted(progress) == sorted(all_epochs)

    # An approved label that cannot be loaded any more (its object gone) is quarantined with the
    # reason: the run that meets it fails by name, and no later run picks it up again.
    c4_revision = _approve(client, producer, truth, ["c4"], 2, new_set)["c4"]  # c4 was predicted by it
    c4_version = client.tracking.GetRevision(
        tracking_pb2.GetRevisionRequest(revision_id=c4_revision), metadata=client.auth("admin")
    ).label_version
    store.delete(layout.label_key("c4", c4_version))
    time.sleep(3)
    bad = _wait_run(stub, stub.StartRun(S.StartRunRequest(reason="bad label"), metadata=admin).run.run_id, admin, 180)
    assert bad.state == S.RUN_STATE_FAILED, bad.reason
    assert "quarantined" in bad.reason and f"c4/{c4_version}" in bad.reason
    again = _wait_run(stub, stub.StartRun(S.StartRunRequest(reason="again"), metadata=admin).run.run_id, admin, 180)
    assert again.state == S.RUN_STATE_FAILED and "no approved revisions" in again.reason
    assert registry.current() == new_set

    # A run cancelled while its job runs fails with who cancelled it; nothing is published.
    cancelled = stub.StartRun(S.StartRunRequest(reason="to cancel", from_originals=True), metadata=admin).run
    deadline = time.monotonic() + 120
    while stub.GetRun(S.GetRunRequest(run_id=cancelled.run_id), metadata=admin).run.state != S.RUN_STATE_RUNNING:
        assert time.monotonic() < deadline, "the run to cancel did not start"
        time.sleep(0.3)
    stub.CancelRun(S.CancelRunRequest(run_id=cancelled.run_id), metadata=admin)
    cancelled = _wait_run(stub, cancelled.run_id, admin, 120)
    assert cancelled.state == S.RUN_STATE_FAILED and "cancelled by" in cancelled.reason
    assert registry.current() == new_set

    # Rollback makes the earlier set current and announces it; an unknown set is NOT_FOUND.
    reply = stub.RollbackModelSet(S.RollbackModelSetRequest(model_set="ms-0", reason="test"), metadata=admin)
    assert reply.model_set == "ms-0" == registry.current()
    with pytest.raises(grpc.RpcError) as err:
        stub.RollbackModelSet(S.RollbackModelSetRequest(model_set="nope", reason="test"), metadata=admin)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    collector.wait_for(0, timeout_s=5)
    announced = [(e.model_set, e.run_id) for e in collector.received if isinstance(e, events_pb2.ModelPublished)]
    assert announced == [(new_set, run_id), ("ms-0", "")]
