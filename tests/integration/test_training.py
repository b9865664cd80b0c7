"""The training loop on this machine: tiny models, a small synthetic cohort, approved revisions
arriving as events trigger a Ray Train run; the gate compares the candidate with the current set
on the frozen held-out case; the better set is published and the inference service serves it
for the next prediction. Around it: a run with nothing new fails cleanly, requests during a run
queue one follow-up, WatchRun streams progress, a missing label version fails a run by name, and
a rollback makes the earlier set current again."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
import torch

from atlasloop.common import events
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import save_nifti
from atlasloop.inference.app import build as build_inference
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.training.app import build as build_training
from atlasloop.training.recipe import Recipe
from atlasloop.training.settings import GatePolicy, TrainingSettings, TriggerPolicy
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

from .conftest import EventCollector, start_in_process

pytestmark = pytest.mark.integration
TOKENS = {"svc": "pipeline:service", "adm": "ops:admin"}
ADMIN, SVC = [("authorization", "Bearer adm")], [("authorization", "Bearer svc")]
S = training_pb2


def _import(stub, tmp_path, case_id: str, seed: int, labelled: bool):
    ct, labels = render(np.random.default_rng([seed, 0]), SITES["A"], 3.0, scale=0.5)
    ct_path = save_nifti(ct, tmp_path / f"{case_id}-ct.nii.gz")
    label_path = save_nifti(labels, tmp_path / f"{case_id}-labels.nii.gz")
    label_upload = upload_file(stub, label_path, ADMIN) if labelled else ""
    stub.ImportCase(
        storage_pb2.ImportCaseRequest(
            upload_id=upload_file(stub, ct_path, ADMIN), case_id=case_id, label_upload_id=label_upload
        ),
        metadata=ADMIN,
    )
    return label_path


def _wait_run(stub, run_id: str, timeout_s: float = 600) -> S.Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = stub.GetRun(S.GetRunRequest(run_id=run_id), metadata=ADMIN).run
        if run.state in (S.RUN_STATE_PUBLISHED, S.RUN_STATE_REJECTED, S.RUN_STATE_FAILED):
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not end")


def test_approved_revisions_train_gate_publish_and_serve(stack, unique, tmp_path):
    stack.start_ray()
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

    storage_settings = StorageSettings(port=0, health_poll_s=60, s3=s3, kafka=kafka, auth={"dev_tokens": TOKENS})
    storage, storage_channel = start_in_process(build_storage(storage_settings), storage_settings)
    storage_stub = storage_pb2_grpc.StorageServiceStub(storage_channel)
    truth = {}
    for index, labelled in enumerate((True, True, False, False, False)):  # c0, c1 come with labels
        truth[f"c{index}"] = _import(storage_stub, tmp_path, f"c{index}", seed=index, labelled=labelled)

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
    inference_settings = InferenceSettings(
        port=0,
        health_poll_s=60,
        s3=s3,
        kafka=kafka,
        ray=stack.ray_settings(),
        storage_target=f"127.0.0.1:{storage.port}",
        storage_token="svc",
        serve_app_name=f"ensemble-{unique}",
        num_cpus=0.25,
        overlap=0.25,
        auth={"dev_tokens": TOKENS},
    )
    inference, inference_channel = start_in_process(
        build_inference(inference_settings), inference_settings, timeout_s=300
    )
    training_settings = TrainingSettings(
        port=0,
        health_poll_s=60,
        s3=s3,
        kafka=kafka,
        ray=stack.ray_settings(),
        storage_target=f"127.0.0.1:{storage.port}",
        storage_token="svc",
        triggers=TriggerPolicy(approved_threshold=2),
        gate=GatePolicy(margin=0.2, replay_eval_cases=0),
        recipe=Recipe(epochs=4, steps_per_epoch=10, batch_size=2, crop=48, learning_rate=3e-3),
        num_workers=2,
        cpus_per_worker=0.5,
        auth={"dev_tokens": TOKENS},
    )
    training, training_channel = start_in_process(build_training(training_settings), training_settings)
    stub = training_pb2_grpc.TrainingServiceStub(training_channel)
    try:
        predicted = [e for e in collector.wait_for(5, timeout_s=400) if isinstance(e, events_pb2.CasePredicted)]
        assert sorted(e.case_id for e in predicted) == ["c0", "c1", "c2", "c3", "c4"]

        # Nothing approved yet: a manual run fails with the reason, and nothing is published.
        empty = stub.StartRun(S.StartRunRequest(reason="too early"), metadata=ADMIN).run
        empty = _wait_run(stub, empty.run_id, 60)
        assert empty.state == S.RUN_STATE_FAILED and "no approved revisions" in empty.reason
        assert registry.current() == "ms-0"

        # Two approved revisions (the ground truth of c2 and c3, as an annotator would submit them)
        # arrive as events, one of them twice: the threshold of two fires one run.
        producer = events.EventProducer(kafka, "test-tracking")
        for case_id in ("c2", "c3"):
            version = storage_stub.WriteLabelVersion(
                storage_pb2.WriteLabelVersionRequest(
                    case_id=case_id,
                    upload_id=upload_file(storage_stub, truth[case_id], ADMIN),
                    source=common_pb2.LABEL_SOURCE_HUMAN,
                    round=1,
                ),
                metadata=SVC,
            ).version.label_version
            approved = events_pb2.AnnotationApproved(
                meta=events.new_meta("tracking"),
                case_id=case_id,
                revision_id=f"rev-{case_id}",
                label_version=version,
                organs=[common_pb2.ORGAN_LIVER],
            )
            producer.publish(approved, key=case_id)
            if case_id == "c2":
                producer.publish(approved, key=case_id)  # redelivered: still one approval
        deadline = time.monotonic() + 60
        while not (runs := stub.ListRuns(S.ListRunsRequest(), metadata=ADMIN).runs)[0].trigger.startswith("approved"):
            assert time.monotonic() < deadline, "no run was triggered"
            time.sleep(0.5)
        run_id = runs[0].run_id
        assert runs[0].trigger == "approved>=2"
        watched: list = []
        watcher = threading.Thread(
            target=lambda: watched.extend(stub.WatchRun(S.WatchRunRequest(run_id=run_id), metadata=ADMIN, timeout=600)),
            daemon=True,
        )
        watcher.start()
        follow_ups = {
            stub.StartRun(S.StartRunRequest(reason=f"impatient {i}"), metadata=ADMIN).run.run_id for i in range(3)
        }
        assert len(follow_ups) == 1 and run_id not in follow_ups  # one follow-up, joined by the others

        run = _wait_run(stub, run_id)
        assert run.state == S.RUN_STATE_PUBLISHED, run.reason
        assert run.published_model_set == f"set-{run_id}" and registry.current() == run.published_model_set
        before = {m.organ: m.dice for m in run.current_metrics}
        after = {m.organ: m.dice for m in run.candidate_metrics}
        print(f"\nrun {run.seconds:.1f} s; Dice before {before}; after {after}")
        assert sum(after.values()) > sum(before.values())
        trained_on = {v.split("/")[0] for v in run.label_versions}
        assert trained_on & {"c2", "c3"} and len(trained_on & {"c2", "c3"}) >= 1
        provenance = registry.manifest("unet", run_id).provenance
        assert provenance["run_id"] == run_id and provenance["base_model_set"] == "ms-0"
        assert provenance["label_versions"] == list(run.label_versions)

        watcher.join(60)
        assert watched[-1].state == S.RUN_STATE_PUBLISHED
        epochs = [(w.architecture, w.epoch) for w in watched if w.epoch]
        assert epochs == [(a, e) for a in ("unet", "dynunet") for e in range(1, 5)]
        assert all(w.loss > 0 and w.eta_s >= 0 for w in watched if w.epoch)

        follow_up = _wait_run(stub, follow_ups.pop(), 120)  # it ran after, with nothing new
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
        inference_stub = inference_pb2_grpc.InferenceServiceStub(inference_channel)
        steps = list(inference_stub.Predict(inference_pb2.PredictRequest(case_id="c4"), metadata=SVC, timeout=120))
        assert steps[-1].ensemble_finished.model_set == new_set

        completed = [e for e in collector.received if isinstance(e, events_pb2.TrainingCompleted)]
        assert [(e.run_id, e.passed_gate) for e in completed if e.run_id == run_id] == [(run_id, True)]
        assert (
            len([e for e in collector.received if isinstance(e, events_pb2.TrainingProgress) and e.run_id == run_id])
            == 8
        )

        # A label version that cannot be read fails the run by name; the current set stays.
        producer.publish(
            events_pb2.AnnotationApproved(
                meta=events.new_meta("tracking"), case_id="c4", revision_id="rev-bad", label_version="v-missing"
            ),
            key="c4",
        )
        time.sleep(3)
        bad = _wait_run(stub, stub.StartRun(S.StartRunRequest(reason="bad label"), metadata=ADMIN).run.run_id, 120)
        assert bad.state == S.RUN_STATE_FAILED and "case c4 label version v-missing" in bad.reason
        assert registry.current() == new_set

        # Rollback makes the earlier set current and announces it; an unknown set is NOT_FOUND.
        reply = stub.RollbackModelSet(S.RollbackModelSetRequest(model_set="ms-0", reason="test"), metadata=ADMIN)
        assert reply.model_set == "ms-0" == registry.current()
        with pytest.raises(grpc.RpcError) as err:
            stub.RollbackModelSet(S.RollbackModelSetRequest(model_set="nope", reason="test"), metadata=ADMIN)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        collector.wait_for(0, timeout_s=5)
        announced = [(e.model_set, e.run_id) for e in collector.received if isinstance(e, events_pb2.ModelPublished)]
        assert announced == [(new_set, run_id), ("ms-0", "")]
    finally:
        collector.close()
        for service, channel in (
            (training, training_channel),
            (inference, inference_channel),
            (storage, storage_channel),
        ):
            channel.close()
            service.stop(0)
        from ray import serve

        serve.delete(f"ensemble-{unique}")
