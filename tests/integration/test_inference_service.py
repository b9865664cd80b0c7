"""The ensemble on Ray Serve, on a two-node local Ray cluster, reached by an inference service that
cannot import Ray: three tiny architectures predict the real CT; outputs are durable and compact;
the pseudo-label lands on the CT's native grid; case.predicted is emitted exactly once although
case.ingested arrives twice; progress streams over gRPC. A model set published while predictions
run reaches the running replicas: no prediction fails, and those asked after the swap carry the new
set. Imported members (an nnU-Net folder, a MONAI bundle) serve beside a MONAI member. (Re-predicting AI-labelled cases
after a training run is tested with training.)"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
import torch

from atlasloop.common import events, layout
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.compact import EnsembleOutput
from atlasloop.imaging.preprocess import preprocess_image
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import load_nifti, save_nifti
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.ensemble import InferenceConfig, run_member
from atlasloop.models.monai_bundle import class_map as bundle_classes
from atlasloop.models.monai_bundle import read_bundle_folder
from atlasloop.models.nnunet import class_map, read_results_folder
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

from .conftest import EventCollector, isolated, running_services
from .monai_bundle_folder import write_bundle
from .nnunet_folder import write_results_folder

pytestmark = pytest.mark.integration
ARCHITECTURES = ("unet", "dynunet", "segresnet")


@pytest.fixture(scope="module")
def ray_stack(stack):
    stack.start_ray()
    return stack


@pytest.fixture
def ensemble_app(ray_stack, unique):
    """This test's own ensemble application on the shared cluster (its bucket and topics), removed after."""
    name = f"ensemble-{unique}"
    yield name
    ray_stack.ray.delete_application(name)


def _register(registry: ModelRegistry, version: str, seed: int) -> str:
    for index, architecture in enumerate(ARCHITECTURES):
        torch.manual_seed(seed * 10 + index)
        registry.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version=version)
    set_version = f"ms-{version}"
    registry.create_set([(a, version) for a in ARCHITECTURES], make_current=False, version=set_version)
    return set_version


def _setup(stack, unique, app_name, consume_events):
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"i{unique}."})
    s3 = stack.s3_settings(bucket=f"inference-{unique}")
    store = ObjectStore(s3)
    store.check_bucket()
    registry = ModelRegistry(store)
    registry.set_current(_register(registry, "v1", seed=1))
    stack.ray.deploy_ensemble(
        {"s3": {"bucket": s3.bucket}, "kafka": {"topic_prefix": kafka.topic_prefix}, "follow_s": 1.0}, name=app_name
    )
    common = isolated(s3.bucket, kafka.topic_prefix)
    settings = {
        "storage": common,
        "inference": common | {"SERVE_APP_NAME": app_name, "CONSUME_EVENTS": str(consume_events).lower()},
    }
    return kafka, store, registry, settings


def test_ensemble_on_ray_serve_predicts_the_real_ct_once(ray_stack, unique, ensemble_app, real_ct_dir, tmp_path):
    stack = ray_stack
    admin = [("authorization", f"Bearer {stack.token_for('admin')}")]
    svc = [("authorization", f"Bearer {stack.token_for('service')}")]
    kafka, store, _registry, settings = _setup(stack, unique, ensemble_app, consume_events=True)
    predicted = EventCollector(kafka, [events_pb2.CasePredicted])
    with running_services(stack, ["storage", "inference"], settings) as channels:
        storage_stub = storage_pb2_grpc.StorageServiceStub(channels["storage"])
        try:
            case = storage_stub.ImportCase(
                storage_pb2.ImportCaseRequest(
                    upload_id=upload_file(storage_stub, real_ct_dir / "example_ct_sm.nii.gz", admin), case_id="real-ct"
                ),
                metadata=admin,
            )
            producer = events.EventProducer(kafka, "test-storage")
            ingested = events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="real-ct", ct=case.info.ct)
            producer.publish(ingested, key="real-ct")  # redelivered: storage published it once already
            predicted.wait_for(1, timeout_s=300)
            time.sleep(5)  # the redelivered event is handled right after the first: any second event shows now
            received = list(predicted.received)
            assert len(received) == 1 and received[0].case_id == "real-ct" and received[0].model_set == "ms-v1"

            output = EnsembleOutput.from_bytes(store.get_bytes(received[0].predictions_prefix + "ensemble.npz"))
            assert output.members == [f"{a}@v1" for a in ARCHITECTURES]
            assert all(len(output.soft[m]) == 9 for m in output.members)
            assert all(c.data.dtype == np.uint8 for m in output.soft.values() for c in m.values())
            download_volume(
                storage_stub,
                "real-ct",
                tmp_path / "ai.nii.gz",
                svc,
                kind=common_pb2.VOLUME_KIND_LABEL,
                label_version=received[0].label_version,
            )
            labels, ct = load_nifti(tmp_path / "ai.nii.gz"), load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
            assert labels.shape == ct.shape and np.allclose(labels.affine, ct.affine)

            stub = inference_pb2_grpc.InferenceServiceStub(channels["inference"])
            steps = list(stub.Predict(inference_pb2.PredictRequest(case_id="real-ct"), metadata=svc, timeout=240))
            assert steps[-1].WhichOneof("progress") == "ensemble_finished"  # already done: the stored record
            assert steps[-1].ensemble_finished.label_version == received[0].label_version
            sets = stub.ListModelSets(inference_pb2.ListModelSetsRequest(), metadata=svc).model_sets
            assert [(s.version, s.current, len(s.members)) for s in sets] == [("ms-v1", True, 3)]
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Predict(inference_pb2.PredictRequest(case_id="nope"), metadata=svc, timeout=30))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            predicted.close()


def test_a_published_set_reaches_the_running_replicas_without_failing_a_prediction(
    ray_stack, unique, ensemble_app, tmp_path
):
    stack = ray_stack
    admin = [("authorization", f"Bearer {stack.token_for('admin')}")]
    svc = [("authorization", f"Bearer {stack.token_for('service')}")]
    _kafka, store, registry, settings = _setup(stack, unique, ensemble_app, consume_events=False)
    new_set = _register(registry, "v2", seed=2)
    cases = [f"s{i}" for i in range(6)]
    with running_services(stack, ["storage", "inference"], settings) as channels:
        storage_stub = storage_pb2_grpc.StorageServiceStub(channels["storage"])
        for index, case_id in enumerate(cases):
            ct, _ = render(np.random.default_rng([index, 1]), SITES["A"], 3.0, scale=0.5)
            storage_stub.ImportCase(
                storage_pb2.ImportCaseRequest(
                    upload_id=upload_file(storage_stub, save_nifti(ct, tmp_path / f"{case_id}.nii.gz"), admin),
                    case_id=case_id,
                ),
                metadata=admin,
            )
        stub = inference_pb2_grpc.InferenceServiceStub(channels["inference"])
        swapped = threading.Event()
        results: dict[str, tuple[bool, str]] = {}  # case -> (asked after the swap, model set of the answer)
        failures: list[str] = []

        def predict(case_id: str) -> None:
            after = swapped.is_set()
            try:
                for step in stub.Predict(inference_pb2.PredictRequest(case_id=case_id), metadata=svc, timeout=300):
                    if step.WhichOneof("progress") == "member_finished" and not swapped.is_set():
                        registry.set_current(new_set)  # mid-request: a member has answered, others work
                        swapped.set()
                    if step.WhichOneof("progress") == "ensemble_finished":
                        results[case_id] = (after, step.ensemble_finished.model_set)
            except grpc.RpcError as exc:
                failures.append(f"{case_id}: {exc.code().name} {exc.details()}")

        for pair in (cases[0:2], cases[2:4], cases[4:6]):  # two at a time, as two annotators' cases
            threads = [threading.Thread(target=predict, args=(case_id,)) for case_id in pair]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(360)
        assert failures == []
        assert sorted(results) == cases
        before = {case: s for case, (after, s) in results.items() if not after}
        after = {case: s for case, (after, s) in results.items() if after}
        assert before and set(before.values()) == {"ms-v1"}  # in flight during the swap: finished on their set
        assert after and set(after.values()) == {new_set}  # asked after it: the new set, no redeploy
        for case_id, (_, model_set) in results.items():
            record = store.get_json(layout.prediction_record_key(case_id, model_set))
            output = EnsembleOutput.from_bytes(store.get_bytes(record["predictions_prefix"] + "ensemble.npz"))
            version = model_set.removeprefix("ms-")
            assert output.members == [f"{a}@{version}" for a in ARCHITECTURES]  # never a mix of sets


def test_imported_members_serve_beside_a_monai_member(ray_stack, unique, ensemble_app, real_ct_dir, tmp_path):
    """An nnU-Net v2 folder and a MONAI bundle join a set with a MONAI member; the Serve replicas run
    them on the native CT (their frameworks' own preprocessing) and their organ maps are those the
    same members give here."""
    stack = ray_stack
    admin = [("authorization", f"Bearer {stack.token_for('admin')}")]
    svc = [("authorization", f"Bearer {stack.token_for('service')}")]
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"n{unique}."})
    s3 = stack.s3_settings(bucket=f"nnserve-{unique}")
    store = ObjectStore(s3)
    store.check_bucket()
    registry = ModelRegistry(store)
    torch.manual_seed(7)
    registry.register("unet", "tiny", state_dict_bytes(build(config("unet", "tiny"))), version="v1")
    payload = read_results_folder(write_results_folder(tmp_path / "nnunet", folds=(0,)))
    registry.register_nnunet("nnunet-abdomen", payload, class_map(payload), version="v1")
    zoo = read_bundle_folder(write_bundle(tmp_path / "bundle"))
    registry.register_bundle("zoo-ct", zoo, bundle_classes(zoo), version="v1")
    members = [("unet", "v1"), ("nnunet-abdomen", "v1"), ("zoo-ct", "v1")]
    registry.create_set(members, make_current=True, version="ms-nn")
    stack.ray.deploy_ensemble(  # its members: the current set's architectures, the imported ones among them
        {"s3": {"bucket": s3.bucket}, "kafka": {"topic_prefix": kafka.topic_prefix}, "follow_s": 1.0, "overlap": 0.5},
        name=ensemble_app,
    )
    common = isolated(s3.bucket, kafka.topic_prefix)
    settings = {"storage": common, "inference": common | {"SERVE_APP_NAME": ensemble_app, "CONSUME_EVENTS": "false"}}
    with running_services(stack, ["storage", "inference"], settings) as channels:
        storage_stub = storage_pb2_grpc.StorageServiceStub(channels["storage"])
        storage_stub.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(storage_stub, real_ct_dir / "example_ct_sm.nii.gz", admin), case_id="real-ct"
            ),
            metadata=admin,
        )
        stub = inference_pb2_grpc.InferenceServiceStub(channels["inference"])
        steps = list(stub.Predict(inference_pb2.PredictRequest(case_id="real-ct"), metadata=svc, timeout=300))
        finished = steps[-1].ensemble_finished
        assert finished.model_set == "ms-nn"
        assert {s.member_finished.member.architecture for s in steps[:-1]} == {a for a, _ in members}
        download_volume(storage_stub, "real-ct", tmp_path / "ct.nii.gz", svc, kind=common_pb2.VOLUME_KIND_CT)
    record = store.get_json(layout.prediction_record_key("real-ct", "ms-nn"))
    output = EnsembleOutput.from_bytes(store.get_bytes(record["predictions_prefix"] + "ensemble.npz"))
    assert output.members == [f"{a}@{v}" for a, v in members]

    ct = load_nifti(tmp_path / "ct.nii.gz")  # as storage keeps it: what the replicas read
    predicted = {
        "nnunet-abdomen": ("liver", "spleen", "kidney_left", "kidney_right"),
        "zoo-ct": ("liver", "spleen", "kidney_left"),
    }
    for name, organs in predicted.items():
        member = registry.load(name, "v1")
        pre = preprocess_image(ct, member.preprocess)
        here = run_member(member, pre.image, InferenceConfig(overlap=0.5), native=(ct, pre.grid))  # the app's
        # untrained, their softmax stays near 1 / classes (no soft map above the threshold): their
        # entropy terms, non-zero wherever a probability is neither 0 nor 1, carry their maps
        served = output.entropy[f"{name}@v1"]
        for organ in organs:
            assert here.entropy[organ].box is not None and served[organ].box == here.entropy[organ].box
            assert np.abs(served[organ].data.astype(int) - here.entropy[organ].data).max() <= 1  # uint8 of the same
        assert served["stomach"].box is None  # an organ it does not predict: nothing
    assert output.entropy["unet@v1"]["stomach"].box is not None  # the MONAI member decides it alone
