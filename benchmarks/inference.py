"""Inference benchmark, side by side on the same CT and the same three tiny models:
(a) plain MONAI ``sliding_window_inference`` of the three models one after another in one process,
(b) the Ray Serve ensemble end to end (request to durable outputs and the AI label version).
Then the plain path on a full-size 512x512x300 CT. Memory: peak RSS of this process for (a);
the Serve replicas' summed RSS for (b)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.server import GrpcService
from atlasloop.common.transfer import upload_file
from atlasloop.imaging.volume import Volume, load_nifti
from atlasloop.inference.serving import Serving
from atlasloop.inference.settings import InferenceSettings
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.ensemble import InferenceConfig, predict
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from benchmarks.machine import median

REAL_CT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real-ct" / "example_ct_sm.nii.gz"
CFG = InferenceConfig(overlap=0.25, sw_batch_size=2)


def _serve_rss_mib() -> float:
    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("ServeReplica" in part for part in (proc.info["cmdline"] or [])):
            total += proc.memory_info().rss
    return total / 2**20


def ensemble(stack) -> list[str]:
    import grpc

    s3 = stack.s3_settings(bucket="bench-inference")
    store = ObjectStore(s3)
    store.check_bucket()
    registry = ModelRegistry(store)
    names = ("unet", "dynunet", "segresnet")
    for seed, architecture in enumerate(names):
        torch.manual_seed(seed)
        registry.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="b1")
    registry.create_set([(a, "b1") for a in names], make_current=True, version="bench")
    members = [registry.load(a, "b1") for a in names]
    ct = load_nifti(REAL_CT)
    plain = []
    for _ in range(3):
        started = time.perf_counter()
        predict(ct, members, CFG)
        plain.append(time.perf_counter() - started)
    plain_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": "bench-inf."})
    tokens = {"svc": "bench:service", "adm": "bench:admin"}
    storage_settings = StorageSettings(port=0, health_poll_s=60, s3=s3, kafka=kafka, auth={"dev_tokens": tokens})
    storage = GrpcService(build_storage(storage_settings), storage_settings)
    storage.start()
    while not storage.monitor.check_once():
        time.sleep(0.2)
    channel = grpc.insecure_channel(f"127.0.0.1:{storage.port}")
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    admin = [("authorization", "Bearer adm")]
    settings = InferenceSettings(
        s3=s3,
        kafka=kafka,
        ray=stack.ray_settings(),
        storage_target=f"127.0.0.1:{storage.port}",
        storage_token="svc",
        num_cpus=0.25,
        overlap=CFG.overlap,
        sw_batch_size=CFG.sw_batch_size,
        serve_app_name="bench-ensemble",
    )
    serving = Serving(settings, store)
    serving.deploy("bench")
    served = []
    for i in range(3):
        stub.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(stub, REAL_CT, admin), case_id=f"b{i}", allow_duplicate=True
            ),
            metadata=admin,
        )
        started = time.perf_counter()
        steps = list(serving.predict(f"b{i}"))
        served.append(time.perf_counter() - started)
        assert steps[-1]["kind"] == "ensemble" and not steps[-1]["repeated"]
    serve_rss = _serve_rss_mib()
    from ray import serve

    serve.delete("bench-ensemble")
    channel.close()
    storage.stop(0)

    voxels = int(np.prod(ct.shape))
    big = Volume(np.full((512, 512, 300), -1000, np.int16), np.diag([0.8, 0.8, 1.0, 1.0]))
    big.array[100:400, 120:380, 20:280] = 40
    started = time.perf_counter()
    predict(big, members, CFG)
    big_s = time.perf_counter() - started
    big_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    a, b = median(plain), median(served)
    return [
        f"CT {REAL_CT.name} {ct.shape} ({voxels:,} voxels), 3 tiny members (unet, dynunet, segresnet), "
        f"overlap {CFG.overlap}, CPU",
        f"(a) plain MONAI, members one after another: {a:6.2f} s/case, {voxels / a:,.0f} voxels/s, "
        f"peak RSS {plain_rss:,.0f} MiB",
        f"(b) Ray Serve ensemble, request to durable outputs: {b:6.2f} s/case, {voxels / b:,.0f} voxels/s, "
        f"replicas' RSS {serve_rss:,.0f} MiB",
        f"  ratio b/a {b / a:.2f} (target <= 1.15 on CPU; members run concurrently only when replicas have "
        f"their own cores: this machine has {psutil.cpu_count()})",
        f"full-size 512x512x300 at 0.8 mm (1.5 mm model grid), plain path: {big_s:.1f} s, "
        f"process peak RSS {big_rss:,.0f} MiB",
    ]
