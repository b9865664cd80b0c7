"""Inference benchmark, side by side on the same CT and the same three tiny models:
(a) plain MONAI ``sliding_window_inference`` of the three members one after another in this process;
(b) the same pipeline as the Serve ingress runs it, in this process: read the CT from S3,
    preprocess, the members, combine, write the durable outputs (compact npz, the AI label version
    through the storage service, ``case.predicted``);
(c) the Ray Serve ensemble on the two-node local cluster, reached as the inference service reaches
    it (HTTP to Serve's proxy, JSON lines back), request to durable outputs.
The ratios c/a (what the issue measured) and c/b (what Serve itself adds) are printed with the
ingress's own breakdown of (c), so the rest can be located. Then the plain path on a full-size
512x512x300 CT. Memory: peak RSS of this process for (a) and (b); the Serve replicas' summed RSS
for (c). Medians of three."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from atlasloop.common import layout
from atlasloop.common.events import EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_rest import RayDashboard
from atlasloop.common.transfer import upload_file
from atlasloop.imaging.preprocess import preprocess_image, to_native
from atlasloop.imaging.stream import load_nifti_chunks
from atlasloop.imaging.volume import Volume, load_nifti
from atlasloop.inference.ensemble_client import EnsembleClient
from atlasloop.inference.outputs import OutputWriter
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.ensemble import InferenceConfig, combine, predict, run_member
from atlasloop.models.records import shared_preprocess
from atlasloop.models.registry import ModelRegistry
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from benchmarks.machine import median

REAL_CT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real-ct" / "example_ct_sm.nii.gz"
CFG = InferenceConfig(overlap=0.25, sw_batch_size=2)
NAMES = ("unet", "dynunet", "segresnet")
APP = "bench-ensemble"


def _serve_rss_mib() -> float:
    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("ServeReplica" in part for part in (proc.info["cmdline"] or [])):
            total += proc.memory_info().rss
    return total / 2**20


def _in_process(store, registry, writer, case_id: str, version: str) -> float:
    """(b): the ingress's steps, one process, members one after another."""
    started = time.perf_counter()
    ct = load_nifti_chunks(store.iter_chunks(layout.ct_key(case_id)), case_id)
    model_set = registry.model_set(version)
    members = [registry.load(m.architecture, m.version) for m in model_set.members]
    pre = preprocess_image(ct, shared_preprocess([m.manifest for m in members]))
    results = [run_member(m, pre.image, CFG) for m in members]
    output, labels = combine(pre.image.shape, pre.grid.cropped_affine, results)
    writer.write(case_id, version, output.to_bytes(), to_native(labels, pre.grid, order=0), {})
    return time.perf_counter() - started


def ensemble(stack) -> list[str]:
    import grpc

    store = ObjectStore(stack.s3_settings())
    store.check_bucket()
    registry = ModelRegistry(store)
    for seed, architecture in enumerate(NAMES):
        torch.manual_seed(seed)
        registry.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="b1")
    registry.create_set([(a, "b1") for a in NAMES], make_current=True, version="bench")
    members = [registry.load(a, "b1") for a in NAMES]
    ct = load_nifti(REAL_CT)
    plain = []
    for _ in range(3):
        started = time.perf_counter()
        predict(ct, members, CFG)
        plain.append(time.perf_counter() - started)
    plain_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    stack.start_service("storage")
    stack.wait_service("storage")
    stack.ray.deploy_ensemble({"overlap": CFG.overlap, "sw_batch_size": CFG.sw_batch_size}, name=APP)
    channel = grpc.insecure_channel(stack.service_target("storage"))
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    admin = [("authorization", f"Bearer {stack.token_for('admin')}")]
    writer = OutputWriter(
        store,
        EventProducer(stack.kafka_settings(), "bench-inference"),
        stack.service_target("storage"),
        stack.token_of_service("inference"),  # what the Serve replicas write AI labels as
    )
    client = EnsembleClient(stack.ray.serve_url, APP, RayDashboard(stack.ray.dashboard_url))

    def new_case(name: str) -> str:
        stub.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(stub, REAL_CT, admin), case_id=name, allow_duplicate=True
            ),
            metadata=admin,
        )
        return name

    in_process, served, phases = [], [], []
    for i in range(3):
        in_process.append(_in_process(store, registry, writer, new_case(f"p{i}"), "bench"))
        case_id = new_case(f"s{i}")
        started = time.perf_counter()
        messages = list(client.run(case_id))
        served.append(time.perf_counter() - started)
        last = messages[-1]
        assert last.HasField("ensemble_finished") and not last.repeated
        phases.append({**dict(last.phase_seconds), "ingress": last.ensemble_finished.seconds})
    in_process_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    serve_rss = _serve_rss_mib()
    stack.ray.delete_application(APP)
    channel.close()
    stack.processes.stop("storage")

    voxels = int(np.prod(ct.shape))
    big = Volume(np.full((512, 512, 300), -1000, np.int16), np.diag([0.8, 0.8, 1.0, 1.0]))
    big.array[100:400, 120:380, 20:280] = 40
    started = time.perf_counter()
    predict(big, members, CFG)
    big_s = time.perf_counter() - started
    big_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    a, b, c = median(plain), median(in_process), median(served)
    step = {name: median([p.get(name, 0.0) for p in phases]) for name in phases[0]}
    transport = c - step["ingress"]
    return [
        f"CT {REAL_CT.name} {ct.shape} ({voxels:,} voxels), 3 tiny members ({', '.join(NAMES)}), "
        f"overlap {CFG.overlap}, CPU, {psutil.cpu_count()} cores",
        f"(a) plain MONAI, members one after another:        {a:6.2f} s/case, peak RSS {plain_rss:,.0f} MiB",
        f"(b) the ingress's steps in one process, durable:    {b:6.2f} s/case, peak RSS {in_process_rss:,.0f} MiB",
        f"(c) Ray Serve ensemble over HTTP, durable:          {c:6.2f} s/case, replicas' RSS {serve_rss:,.0f} MiB",
        f"  ratio c/a {c / a:.2f}   ratio c/b {c / b:.2f}   (target c/a <= 1.15)",
        "  (c) at the ingress: "
        + ", ".join(f"{name} {step[name]:.2f} s" for name in ("read_ct", "preprocess", "members", "combine", "write"))
        + f"; HTTP and proxy {transport:.2f} s",
        f"full-size 512x512x300 at 0.8 mm (1.5 mm model grid), plain path: {big_s:.1f} s, "
        f"process peak RSS {big_rss:,.0f} MiB",
    ]
