"""The bad-input suite: every hostile input of ``bad_inputs.CASES`` is sent to the real services
(storage, tracking, scoring, rendering, inference, training on S3, Kafka and PostgreSQL) and must be
answered with its status and a message that says what is wrong, leaving nothing behind: no object
outside ``staging/`` (uploads the cases make on purpose), no row in any tracking table, no event.
Two event cases follow: an undecodable event and an event for a case that never comes are
dead-lettered, their partition moves on, and they change no row."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field

import grpc
import numpy as np
import psycopg
import pytest

from atlasloop.common import dead_letters, events
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.server import GrpcService
from atlasloop.common.transfer import upload_file
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import save_nifti
from atlasloop.inference.v1 import inference_pb2_grpc
from atlasloop.rendering.v1 import rendering_pb2_grpc
from atlasloop.scoring.v1 import scoring_pb2_grpc
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from atlasloop.training.v1 import training_pb2_grpc

from .bad_inputs import CASES, BadInput
from .conftest import EventCollector, start_in_process

pytestmark = pytest.mark.integration

TOKENS = {
    "adm": "ops:admin",
    "ann": "alice:annotator",
    "rev": "rita:reviewer",
    "svc": "robot:service",
    "trk": "tracking:service",
    "inf": "inference:service",
}
ROLE_TOKEN = {
    "admin": "adm",
    "annotator": "ann",
    "reviewer": "rev",
    "service": "svc",
    "tracking": "trk",
    "inference": "inf",
}


@dataclass
class Env:
    storage: storage_pb2_grpc.StorageServiceStub
    tracking: tracking_pb2_grpc.TrackingServiceStub
    scoring: scoring_pb2_grpc.ScoringServiceStub
    rendering: rendering_pb2_grpc.RenderingServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    training: training_pb2_grpc.TrainingServiceStub
    case_id: str
    upload_id: str
    store: ObjectStore
    database_dsn: str
    kafka: object
    collector: EventCollector
    stops: list = field(default_factory=list)

    def bearer(self, token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    def auth(self, role: str) -> list[tuple[str, str]]:
        return self.bearer(ROLE_TOKEN[role])

    def objects(self) -> set[str]:
        return {k for k in self.store.list_keys("") if not k.startswith("staging/")}

    def rows(self) -> dict[str, int]:
        with psycopg.connect(self.database_dsn) as connection:
            tables = [
                r[0]
                for r in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ]
            return {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    from atlasloop.inference.app import build as build_inference
    from atlasloop.inference.settings import InferenceSettings
    from atlasloop.rendering.app import build as build_rendering
    from atlasloop.rendering.settings import RenderingSettings
    from atlasloop.scoring.app import build as build_scoring
    from atlasloop.scoring.settings import ScoringSettings
    from atlasloop.storage.app import build as build_storage
    from atlasloop.storage.settings import StorageSettings
    from atlasloop.tracking.app import build as build_tracking
    from atlasloop.tracking.settings import TrackingSettings
    from atlasloop.training.app import build as build_training
    from atlasloop.training.settings import TrainingSettings

    unique = f"bad{time.monotonic_ns() % 10**8}"
    kafka = stack.kafka_settings().model_copy(
        update={"topic_prefix": f"{unique}.", "max_attempts": 2, "retry_backoff_s": 0.05, "not_ready_wait_s": 2.0}
    )
    s3 = stack.s3_settings(bucket=unique)
    store = ObjectStore(s3)
    store.check_bucket()
    admin_dsn = stack.database_url().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {unique}")
    database_url = stack.database_url().rsplit("/", 1)[0] + f"/{unique}"
    common = {"port": 0, "health_poll_s": 60, "kafka": kafka, "auth": {"dev_tokens": TOKENS}}
    started, channels = [], {}
    try:
        storage_settings = StorageSettings(s3=s3, **common)
        service, channels["storage"] = start_in_process(build_storage(storage_settings), storage_settings)
        started.append(service)
        storage_target = f"127.0.0.1:{service.port}"
        tracking_settings = TrackingSettings(
            database={"url": database_url}, storage_target=storage_target, storage_token="trk", **common
        )
        service, channels["tracking"] = start_in_process(build_tracking(tracking_settings), tracking_settings)
        started.append(service)
        for name, build, settings in (
            ("scoring", build_scoring, ScoringSettings(s3=s3, **common)),
            ("rendering", build_rendering, RenderingSettings(s3=s3, **common)),
        ):
            service, channels[name] = start_in_process(build(settings), settings)
            started.append(service)
        nowhere = "http://127.0.0.1:9"  # no Ray here: these inputs must be refused before it is needed
        for name, build, settings in (
            (
                "inference",
                build_inference,
                InferenceSettings(
                    s3=s3,
                    serve_url=nowhere,
                    ray_dashboard_url=nowhere,
                    storage_target=storage_target,
                    consume_events=False,
                    **common,
                ),
            ),
            (
                "training",
                build_training,
                TrainingSettings(s3=s3, ray_dashboard_url=nowhere, consume_events=False, **common),
            ),
        ):
            service = GrpcService(build(settings), settings)
            service.start()
            started.append(service)
            channels[name] = grpc.insecure_channel(f"127.0.0.1:{service.port}")

        storage = storage_pb2_grpc.StorageServiceStub(channels["storage"])
        tmp = tmp_path_factory.mktemp("bad")
        ct, labels = render(np.random.default_rng([5, 0]), SITES["A"], 3.0, scale=0.5)
        admin = [("authorization", "Bearer adm")]
        ct_upload = upload_file(storage, save_nifti(ct, tmp / "ct.nii.gz"), admin)
        storage.ImportCase(storage_pb2.ImportCaseRequest(upload_id=ct_upload, case_id="good-case"), metadata=admin)
        label_upload = upload_file(storage, save_nifti(labels, tmp / "labels.nii.gz"), admin)
        tracking = tracking_pb2_grpc.TrackingServiceStub(channels["tracking"])
        deadline = time.monotonic() + 60
        while not list(tracking.ListCases(tracking_pb2.ListCasesRequest(), metadata=admin).cases):
            assert time.monotonic() < deadline, "tracking never saw the valid case"
            time.sleep(0.5)
        collector = EventCollector(kafka, list(events.TOPICS))
        collector.wait_for(1, timeout_s=20)  # the valid case's case.ingested: the collector is reading
        yield Env(
            storage=storage,
            tracking=tracking,
            scoring=scoring_pb2_grpc.ScoringServiceStub(channels["scoring"]),
            rendering=rendering_pb2_grpc.RenderingServiceStub(channels["rendering"]),
            inference=inference_pb2_grpc.InferenceServiceStub(channels["inference"]),
            training=training_pb2_grpc.TrainingServiceStub(channels["training"]),
            case_id="good-case",
            upload_id=label_upload,
            store=store,
            database_dsn=database_url.replace("postgresql+psycopg://", "postgresql://"),
            kafka=kafka,
            collector=collector,
        )
        collector.close()
    finally:
        for channel in channels.values():
            channel.close()
        for service in reversed(started):
            service.stop(0)
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {unique} WITH (FORCE)")


@pytest.mark.parametrize("bad", CASES, ids=[f"{b.service}-{b.name}" for b in CASES])
def test_bad_input_is_refused_with_a_clear_status_and_leaves_nothing(env, bad: BadInput):
    objects, rows, received = env.objects(), env.rows(), len(env.collector.received)
    with pytest.raises(grpc.RpcError) as err:
        bad.send(env)
    code, details = err.value.code(), err.value.details() or ""
    assert code == bad.code, f"{bad.name}: {code.name} {details!r}"
    assert bad.says.lower() in details.lower(), f"{bad.name}: {details!r} does not say {bad.says!r}"
    assert 0 < len(details) <= 500 and "Traceback" not in details, details
    assert env.objects() == objects, f"{bad.name} left objects behind"
    assert env.rows() == rows, f"{bad.name} left rows behind"
    time.sleep(0.2)
    assert len(env.collector.received) == received, f"{bad.name} published an event"


def test_poison_events_are_dead_lettered_and_change_nothing(env):
    """Two hostile events for tracking's consumer: bytes that are not the event their header names,
    and a score for a case that never comes. Both end on the dead-letter topic with their reason;
    the valid event behind them on the same partition is applied."""
    rows = env.rows()
    producer = events.EventProducer(env.kafka, "intruder")
    topic = events.topic_for(events_pb2.CaseScored, env.kafka)
    headers = events.encode(events_pb2.CaseScored(meta=events.new_meta("scoring"), case_id="good-case"))[1]
    producer.publish_raw(topic, "good-case", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", headers)
    ghost = events_pb2.CaseScored(meta=events.new_meta("scoring"), case_id="ghost-case", model_set="m", priority=1)
    producer.publish(ghost, key="good-case")
    producer.close()
    deadline = time.monotonic() + 60
    while len(letters := [lt for lt in dead_letters.read(env.kafka) if lt.group == "tracking"]) < 2:
        assert time.monotonic() < deadline, f"dead letters: {letters}"  # (the collector's group has its own)
        time.sleep(0.5)
    reasons = sorted(letter.reason.split(":")[0] for letter in letters)
    assert reasons == ["NotReady", "undecodable"], reasons
    assert all(letter.topic == topic and letter.key == "good-case" for letter in letters)
    after = env.rows()
    assert {t: n for t, n in after.items() if t != "processed_events"} == {
        t: n for t, n in rows.items() if t != "processed_events"
    }


# What refusing one hostile file may cost the storage service (and this test's client side, which
# runs in the same process): far below what the files claim (800 MB, 27 PB of voxels, 200 MB of
# stream), so a refusal that read the claim would fail.
PEAK_BOUND_MIB = 48
HOSTILE_FILES = ("decompression_bomb", "header_claims_terabytes", "zip_with_too_many_members")


def test_refusing_hostile_files_stays_within_a_memory_bound(env):
    """Peak Python and numpy allocations (tracemalloc sees both, in every thread of the in-process
    server) while storage refuses each hostile file and an upload stream far longer than declared."""
    by_name = {bad.name: bad for bad in CASES}

    def endless():
        yield storage_pb2.UploadVolumeRequest(
            header=storage_pb2.UploadHeader(file_name="x.nii.gz", size_bytes=1000, sha256="0" * 64)
        )
        chunk = b"x" * (1 << 20)
        for _ in range(200):
            yield storage_pb2.UploadVolumeRequest(data=chunk)

    sends = {name: by_name[name].send for name in HOSTILE_FILES}
    sends["endless upload"] = lambda env: env.storage.UploadVolume(endless(), metadata=env.auth("admin"))
    peaks = {}
    for name, send in sends.items():
        tracemalloc.start()
        try:
            with pytest.raises(grpc.RpcError):
                send(env)
            peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    print(f"peak MiB while refusing: { {k: round(v, 1) for k, v in peaks.items()} }")
    assert max(peaks.values()) < PEAK_BOUND_MIB, peaks


def test_the_suite_holds_at_least_forty_inputs():
    from .bad_inputs import count_by

    assert len(CASES) >= 40, len(CASES)
    assert len({b.name for b in CASES}) == len(CASES)
    assert set(count_by("service")) == {"storage", "tracking", "scoring", "rendering", "inference", "training"}
