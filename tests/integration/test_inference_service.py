"""The ensemble on Ray Serve on this machine: three tiny architectures predict the real CT; outputs
are durable and compact; the pseudo-label lands on the CT's native grid; case.predicted is emitted
exactly once although case.ingested arrives twice; progress streams over gRPC. (Serving a newly
published set and re-predicting AI-labelled cases is tested with training, test_training.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from atlasloop.common import events
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.compact import EnsembleOutput
from atlasloop.imaging.volume import load_nifti
from atlasloop.inference.app import build as build_inference
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

from .conftest import EventCollector, start_in_process

pytestmark = pytest.mark.integration
TOKENS = {"svc": "inference:service", "adm": "ops:admin"}
ADMIN, SVC = [("authorization", "Bearer adm")], [("authorization", "Bearer svc")]


@pytest.fixture(scope="module")
def ray_stack(stack):
    stack.start_ray()
    return stack


def test_ensemble_on_ray_serve_predicts_the_real_ct_once(ray_stack, unique, real_ct_dir, tmp_path):
    stack = ray_stack
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"i{unique}."})
    s3 = stack.s3_settings(bucket=f"inference-{unique}")
    store = ObjectStore(s3)
    store.check_bucket()
    registry = ModelRegistry(store)
    for seed, architecture in enumerate(("unet", "dynunet", "segresnet")):
        torch.manual_seed(seed)
        registry.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="v1")
    registry.create_set([("unet", "v1"), ("dynunet", "v1"), ("segresnet", "v1")], make_current=True, version="ms-1")

    storage_settings = StorageSettings(port=0, health_poll_s=60, s3=s3, kafka=kafka, auth={"dev_tokens": TOKENS})
    storage, storage_channel = start_in_process(build_storage(storage_settings), storage_settings)
    storage_stub = storage_pb2_grpc.StorageServiceStub(storage_channel)
    case = storage_stub.ImportCase(
        storage_pb2.ImportCaseRequest(
            upload_id=upload_file(storage_stub, real_ct_dir / "example_ct_sm.nii.gz", ADMIN), case_id="real-ct"
        ),
        metadata=ADMIN,
    )
    predicted = EventCollector(kafka, [events_pb2.CasePredicted])
    settings = InferenceSettings(
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
    service, channel = start_in_process(build_inference(settings), settings, timeout_s=300)
    try:
        producer = events.EventProducer(kafka, "test-storage")
        ingested = events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="real-ct", ct=case.info.ct)
        producer.publish(ingested, key="real-ct")
        producer.publish(ingested, key="real-ct")  # redelivered
        predicted.wait_for(1, timeout_s=240)
        time.sleep(5)  # the redelivered event is handled right after the first: any second event shows now
        received = list(predicted.received)
        assert len(received) == 1 and received[0].case_id == "real-ct" and received[0].model_set == "ms-1"

        output = EnsembleOutput.from_bytes(store.get_bytes(received[0].predictions_prefix + "ensemble.npz"))
        assert len(output.members) == 3 and all(len(output.soft[m]) == 9 for m in output.members)
        assert all(c.data.dtype == np.uint8 for m in output.soft.values() for c in m.values())
        download_volume(
            storage_stub,
            "real-ct",
            tmp_path / "ai.nii.gz",
            SVC,
            kind=common_pb2.VOLUME_KIND_LABEL,
            label_version=received[0].label_version,
        )
        labels, ct = load_nifti(tmp_path / "ai.nii.gz"), load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
        assert labels.shape == ct.shape and np.allclose(labels.affine, ct.affine)

        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        steps = list(stub.Predict(inference_pb2.PredictRequest(case_id="real-ct"), metadata=SVC, timeout=240))
        assert steps[-1].WhichOneof("progress") == "ensemble_finished"  # already done: the stored record
        assert steps[-1].ensemble_finished.label_version == received[0].label_version
        sets = stub.ListModelSets(inference_pb2.ListModelSetsRequest(), metadata=SVC).model_sets
        assert [(s.version, s.current, len(s.members)) for s in sets] == [("ms-1", True, 3)]
        import grpc

        with pytest.raises(grpc.RpcError) as err:
            list(stub.Predict(inference_pb2.PredictRequest(case_id="nope"), metadata=SVC, timeout=30))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        predicted.close()
        channel.close()
        service.stop(0)
        storage_channel.close()
        storage.stop(0)
        from ray import serve

        serve.delete(f"ensemble-{unique}")
