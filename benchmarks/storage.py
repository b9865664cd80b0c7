"""Storage benchmark: a 512x512x300 int16 CT through the storage service over gRPC on loopback,
side by side with the raw S3 client on the same file (the service's overhead as a ratio)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from scipy import ndimage

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.server import GrpcService
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from benchmarks.machine import median

REPEATS = 3


def _ct(path: Path) -> Path:
    rng = np.random.default_rng(0)
    body = ndimage.zoom(rng.standard_normal((16, 16, 10)), (32, 32, 30), order=1) * 200
    array = np.clip(body + rng.normal(0, 20, body.shape), -1024, 3000).astype(np.int16)
    return save_nifti(Volume(array, np.diag([0.8, 0.8, 1.0, 1.0])), path)


def transfer(stack) -> list[str]:
    settings = StorageSettings(
        port=0,
        max_upload_bytes=2**30,
        health_poll_s=60,
        s3=stack.s3_settings(bucket="bench-storage"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": "bench."}),
        auth={"dev_tokens": {"t": "bench:admin"}},
    )
    service = GrpcService(build(settings), settings)
    service.start()
    while not service.monitor.check_once():
        time.sleep(0.2)
    metadata = [("authorization", "Bearer t")]
    channel = grpc.insecure_channel(
        f"127.0.0.1:{service.port}", options=[("grpc.max_receive_message_length", 16 * 2**20)]
    )
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    raw = ObjectStore(settings.s3)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        path = _ct(Path(tmp) / "ct.nii")
        mib = path.stat().st_size / 2**20
        up, raw_up, imp, down, raw_down = [], [], [], [], []
        for i in range(REPEATS):
            started = time.perf_counter()
            upload_id = upload_file(stub, path, metadata)
            up.append(time.perf_counter() - started)
            started = time.perf_counter()
            raw.put_file(f"bench/raw-{i}.nii", path)
            raw_up.append(time.perf_counter() - started)
            started = time.perf_counter()
            reply = stub.ImportCase(
                storage_pb2.ImportCaseRequest(upload_id=upload_id, allow_duplicate=True), metadata=metadata, timeout=600
            )
            imp.append(time.perf_counter() - started)
            started = time.perf_counter()
            download_volume(stub, reply.case_id, Path(tmp) / "back.nii.gz", metadata)
            down.append(time.perf_counter() - started)
            stored_mib = reply.info.ct.size_bytes / 2**20
            started = time.perf_counter()
            raw.download_file(reply.info.ct.key, Path(tmp) / "raw.nii.gz")
            raw_down.append(time.perf_counter() - started)
        lines += [
            f"CT file {mib:.0f} MiB (.nii, int16 512x512x300); stored canonical .nii.gz {stored_mib:.0f} MiB",
            f"upload over gRPC (1 MiB chunks, verified, staged): {mib / median(up):6.1f} MiB/s  ({median(up):.2f} s)",
            f"raw S3 put of the same file:                      {mib / median(raw_up):6.1f} MiB/s  "
            f"({median(raw_up):.2f} s); ratio gRPC/raw {median(up) / median(raw_up):.2f}",
            f"import (parse, canonical gzip, store, event):     {median(imp):.2f} s",
            f"download over gRPC (verified):                    {stored_mib / median(down):6.1f} MiB/s  "
            f"({median(down):.2f} s)",
            f"raw S3 get of the same object:                    {stored_mib / median(raw_down):6.1f} MiB/s  "
            f"({median(raw_down):.2f} s); ratio gRPC/raw {median(down) / median(raw_down):.2f}",
        ]
    channel.close()
    service.stop(0)
    return lines
