"""Tracking load test: 10,000 queued cases, 50 concurrent annotators over gRPC on loopback.

NextCase is measured over the first 1,000 leases; SubmitRevision over 100 cases that also live in
the storage service (small volumes, so the figure is tracking's own cost: storage write, two label
downloads, the diff, one transaction). Latencies are per call, p50 and p99.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import psycopg
from sqlalchemy import insert

from atlasloop.common.database import make_engine
from atlasloop.common.server import GrpcService
from atlasloop.common.settings import DatabaseSettings
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking import migrate
from atlasloop.tracking.app import build as build_tracking
from atlasloop.tracking.models import Case, LabelVersion, QueueEntry
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

CASES, CLIENTS, STORED = 10_000, 50, 100


def _percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"p50 {np.percentile(ms, 50):6.1f} ms, p99 {np.percentile(ms, 99):6.1f} ms (n={len(ms)})"


def _start(spec, settings):
    service = GrpcService(spec, settings)
    service.start()
    while not service.monitor.check_once():
        time.sleep(0.2)
    return service


def load(stack) -> list[str]:
    admin_dsn = stack.database_url().replace("postgresql+psycopg://", "postgresql://")
    name = f"atl_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    database = DatabaseSettings(url=stack.database_url().rsplit("/", 1)[0] + f"/{name}")
    tokens = {f"tok-{i}": f"ann-{i}:annotator" for i in range(CLIENTS)} | {
        "svc": "tracking:service",
        "adm": "ops:admin",
    }
    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": "bench-trk."})
    storage_settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket="bench-tracking"),
        kafka=kafka,
        auth={"dev_tokens": tokens},
    )
    storage = _start(build_storage(storage_settings), storage_settings)
    settings = TrackingSettings(
        port=0,
        health_poll_s=60,
        max_workers=64,
        database=database,
        kafka=kafka,
        storage_target=f"127.0.0.1:{storage.port}",
        storage_token="svc",
        auth={"dev_tokens": tokens},
    )
    engine = make_engine(database)
    migrate.upgrade(engine)
    channel = grpc.insecure_channel(f"127.0.0.1:{storage.port}")
    store_stub = storage_pb2_grpc.StorageServiceStub(channel)
    rng = np.random.default_rng(0)
    ai_versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        affine = np.diag([3.0, 3.0, 3.0, 1.0])
        for i in range(STORED):  # small real cases in storage, with an AI label version each
            ct = rng.integers(-200, 200, (24, 24, 12)).astype(np.int16)
            save_nifti(Volume(ct, affine), Path(tmp) / "ct.nii.gz")
            store_stub.ImportCase(
                storage_pb2.ImportCaseRequest(
                    upload_id=upload_file(store_stub, Path(tmp) / "ct.nii.gz", [("authorization", "Bearer adm")]),
                    case_id=f"c{i:05d}",
                    allow_duplicate=True,
                ),
                metadata=[("authorization", "Bearer adm")],
            )
            labels = np.zeros(ct.shape, np.uint8)
            labels[4:16, 4:16, 2:8] = 5
            save_nifti(Volume(labels, affine), Path(tmp) / "ai.nii.gz")
            ai_versions[f"c{i:05d}"] = store_stub.WriteLabelVersion(
                storage_pb2.WriteLabelVersionRequest(
                    case_id=f"c{i:05d}",
                    upload_id=upload_file(store_stub, Path(tmp) / "ai.nii.gz", [("authorization", "Bearer svc")]),
                    source=common_pb2.LABEL_SOURCE_AI,
                ),
                metadata=[("authorization", "Bearer svc")],
            ).version.label_version
        labels[4:18, 4:16, 2:8] = 5
        save_nifti(Volume(labels, affine), Path(tmp) / "revised.nii.gz")
        revised_path = Path(tmp) / "revised.nii.gz"
        with engine.begin() as connection:
            connection.execute(
                insert(Case),
                [
                    {
                        "id": f"c{i:05d}",
                        "state": "queued",
                        "round": 1,
                        "priority": float(CASES - i),
                        "geometry": {},
                        "ai_label_version": ai_versions.get(f"c{i:05d}", f"ai-{i}"),
                        "current_label_version": ai_versions.get(f"c{i:05d}", f"ai-{i}"),
                    }
                    for i in range(CASES)
                ],
            )
            connection.execute(
                insert(LabelVersion),
                [{"version": v, "case_id": c, "source": "ai", "organ_provenance": {}} for c, v in ai_versions.items()],
            )
            connection.execute(
                insert(QueueEntry),
                [
                    {"case_id": f"c{i:05d}", "round": 1, "priority": float(CASES - i), "organs": ["liver"]}
                    for i in range(CASES)
                ],
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")  # as after any bulk load
        tracking = _start(build_tracking(settings), settings)
        tchannel = grpc.insecure_channel(f"127.0.0.1:{tracking.port}")
        stub = tracking_pb2_grpc.TrackingServiceStub(tchannel)
        next_times: list[float] = []
        submit_times: list[float] = []
        leases: list[tuple[int, str, str]] = []
        lock = threading.Lock()

        def annotate(i: int) -> None:
            md = [("authorization", f"Bearer tok-{i}")]
            for _ in range(1000 // CLIENTS):
                started = time.perf_counter()
                reply = stub.NextCase(tracking_pb2.NextCaseRequest(), metadata=md)
                elapsed = time.perf_counter() - started
                with lock:
                    next_times.append(elapsed)
                    leases.append((i, reply.lease.lease_id, reply.lease.case_id))

        def revise(items: list[tuple[int, str, str]]) -> None:
            for i, lease_id, _case_id in items:
                md = [("authorization", f"Bearer tok-{i}")]
                upload_id = upload_file(store_stub, revised_path, md)
                started = time.perf_counter()
                stub.SubmitRevision(
                    tracking_pb2.SubmitRevisionRequest(
                        lease_id=lease_id, upload_id=upload_id, organs=[5], seconds_spent=60
                    ),
                    metadata=md,
                )
                with lock:
                    submit_times.append(time.perf_counter() - started)

        started = time.perf_counter()
        threads = [threading.Thread(target=annotate, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        next_wall = time.perf_counter() - started
        stored = [lease for lease in leases if lease[2] in ai_versions]
        groups = [stored[k::CLIENTS] for k in range(CLIENTS)]
        threads = [threading.Thread(target=revise, args=(g,)) for g in groups if g]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with psycopg.connect(database.url.replace("postgresql+psycopg://", "postgresql://")) as connection:
            size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        tchannel.close()
        tracking.stop(0)
    channel.close()
    storage.stop(0)
    engine.dispose()
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    unique = len({c for _, _, c in leases})
    return [
        f"{CASES:,} queued cases, {CLIENTS} concurrent annotators over gRPC (PostgreSQL on this machine)",
        f"NextCase:       {_percentiles(next_times)}; {len(leases) / next_wall:.0f} leases/s; "
        f"{unique} distinct cases for {len(leases)} leases",
        f"SubmitRevision: {_percentiles(submit_times)} (storage write + 2 label reads + diff + transaction)",
        f"database size after the run: {size / 2**20:.1f} MiB",
    ]
