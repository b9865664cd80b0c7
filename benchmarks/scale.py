"""Scale simulation: the control plane over an AbdomenAtlas-sized cohort of 8,448 cases.

What runs for real: every case's ``case.ingested``, ``case.predicted`` and ``case.scored`` go
through Kafka (Tansu) into the tracking service's consumer and PostgreSQL, exactly as in
production; then the top 5% are queued and leased. Scoring is measured on stored outputs of small
simulated cases (a sample) and extrapolated. The projection for full-size CTs states its per-case
inputs: the CPU figures are this machine's (``make bench``'s inference section); no GPU was lent
to this session, so GPU time per case is a stated assumption, shown for several values.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import psycopg
from sqlalchemy import func, select

from atlasloop.common import layout
from atlasloop.common.database import make_engine
from atlasloop.common.domain import organ_to_proto
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.settings import DatabaseSettings
from atlasloop.events.v1 import events_pb2
from atlasloop.method.case_scoring import score_case
from atlasloop.method.simulate import ErrorModel, simulate
from atlasloop.tracking import migrate
from atlasloop.tracking.app import build as build_tracking
from atlasloop.tracking.models import Case
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from benchmarks.tracking import _percentiles, _start

CASES, QUEUED_SHARE, SCORING_SAMPLE = 8_448, 0.05, 24


def _events(case_id: str, index: int):
    ingested = events_pb2.CaseIngested(meta=new_meta("storage"), case_id=case_id)
    predicted = events_pb2.CasePredicted(
        meta=new_meta("inference"),
        case_id=case_id,
        model_set="set-1",
        label_version=f"ai-{index}",
        predictions_prefix=layout.predictions_prefix(case_id),
    )
    scored = events_pb2.CaseScored(
        meta=new_meta("scoring"), case_id=case_id, model_set="set-1", priority=float((index * 7919) % CASES)
    )
    return ingested, predicted, scored


def scoring_seconds_per_case() -> float:
    rng = np.random.default_rng(0)
    truth = np.zeros((96, 96, 64), np.uint8)
    truth[20:60, 20:70, 10:50] = 5
    truth[60:80, 30:50, 20:40] = 8
    truth[30:45, 70:85, 15:35] = 3
    outputs = [simulate(truth, np.diag([1.5, 1.5, 1.5, 1.0]), rng, ErrorModel()) for _ in range(SCORING_SAMPLE)]
    started = time.perf_counter()
    for i, output in enumerate(outputs):
        score_case(f"s{i}", output, "improved")
    return (time.perf_counter() - started) / len(outputs)


def control_plane(stack) -> list[str]:
    admin_dsn = stack.database_url().replace("postgresql+psycopg://", "postgresql://")
    name = f"atl_scale_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    lines = []
    try:
        database = DatabaseSettings(url=stack.database_url().rsplit("/", 1)[0] + f"/{name}")
        kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"scale-{uuid.uuid4().hex[:6]}."})
        tokens = {"adm": "ops:admin", "ann": "ann:annotator"}
        settings = TrackingSettings(
            port=0, health_poll_s=60, database=database, kafka=kafka, auth={"dev_tokens": tokens}
        )
        engine = make_engine(database)
        migrate.upgrade(engine)
        producer = EventProducer(kafka, "scale-bench")
        started = time.perf_counter()
        batches = [_events(f"c{index:05d}", index) for index in range(CASES)]
        for stage in range(3):  # the pipeline's order: all ingested, predicted later, scored after
            for index, events in enumerate(batches):
                producer.publish(events[stage], key=f"c{index:05d}")
        published_s = time.perf_counter() - started
        lines.append(
            f"published {3 * CASES} events in {published_s:.1f} s: {3 * CASES / published_s:,.0f} events/s "
            "(synchronous, each acknowledged)"
        )
        tracking = _start(build_tracking(settings), settings)
        try:
            started = time.perf_counter()
            deadline = started + 3600
            while True:
                with engine.connect() as connection:
                    done = connection.scalar(select(func.count()).select_from(Case).where(Case.state == "scored"))
                if done == CASES or time.perf_counter() > deadline:
                    break
                time.sleep(1)
            consumed_s = time.perf_counter() - started
            lines.append(
                f"tracking consumed {3 * CASES} events into PostgreSQL in {consumed_s:.1f} s: "
                f"{3 * CASES / consumed_s:,.0f} events/s ({done} of {CASES} cases scored)"
            )
            with engine.connect() as connection:
                top = connection.execute(
                    select(Case.id, Case.priority).order_by(Case.priority.desc()).limit(int(QUEUED_SHARE * CASES))
                ).all()
            import grpc

            channel = grpc.insecure_channel(f"127.0.0.1:{tracking.port}")
            stub = tracking_pb2_grpc.TrackingServiceStub(channel)
            started = time.perf_counter()
            stub.QueueCases(
                tracking_pb2.QueueCasesRequest(
                    round=1,
                    cases=[
                        tracking_pb2.QueuedCase(case_id=c, priority=p, organs=[organ_to_proto("liver")]) for c, p in top
                    ],
                ),
                metadata=[("authorization", "Bearer adm")],
                timeout=600,
            )
            lines.append(f"queued the top {len(top)} cases (5%) in {time.perf_counter() - started:.2f} s")
            leases = []
            for _ in range(100):
                t = time.perf_counter()
                stub.NextCase(tracking_pb2.NextCaseRequest(), metadata=[("authorization", "Bearer ann")])
                leases.append(time.perf_counter() - t)
            lines.append(f"NextCase over the queued round, one annotator: {_percentiles(leases)}")
            channel.close()
        finally:
            tracking.stop(0)
            producer.close()
        with psycopg.connect(admin_dsn.rsplit("/", 1)[0] + f"/{name}") as connection:
            size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        lines.append(
            f"database size after {CASES} cases: {size / 2**20:.1f} MiB "
            f"({size / CASES / 1024:.1f} KiB per case, audit and processed events included)"
        )
        engine.dispose()
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    score_s = scoring_seconds_per_case()
    lines.append(
        f"scoring stored outputs (simulated 96x96x64 cases, improved mode): {score_s:.2f} s per case, "
        f"{CASES * score_s / 3600:.1f} CPU-hours for {CASES} cases at this size"
    )
    lines.append(
        "projection for 8,448 full-size CTs (512x512x300), inference wall time = cases x t / GPUs "
        "(t: seconds per case per GPU for the 3-member paper-size ensemble; not measured here, no GPU "
        "was lent; the tiny ensemble takes 25.7 s per full-size case on this 2-core CPU):"
    )
    for t in (10, 30, 60):
        cells = ", ".join(f"{gpus} GPUs {CASES * t / gpus / 3600:.1f} h" for gpus in (1, 8, 32))
        lines.append(f"  t = {t} s: {cells}")
    return lines
