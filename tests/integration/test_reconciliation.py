"""Tracking's reconciliation sweep against a real storage service, S3, Kafka and PostgreSQL: a case
an import wrote but never announced is announced again and recorded; an unlabelled case stuck
before prediction is announced again; a tracked case storage never held is reported; young cases
are left alone; only an admin may ask for a sweep."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from atlasloop.common import events, layout
from atlasloop.common.database import make_engine
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.storage.app import build as build_storage
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking.app import build as build_tracking
from atlasloop.tracking.settings import TrackingSettings
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

from .conftest import start_in_process

pytestmark = pytest.mark.integration

TOKENS = {"adm": "ops:admin", "rev": "rita:reviewer", "trk": "tracking:service"}
ADMIN = [("authorization", "Bearer adm")]
HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def _killed_import(store, template: str, case_id: str, imported_at: datetime) -> None:
    """What an import SIGKILLed after writing ``meta.json`` and before publishing leaves behind:
    the case's CT and record, and no event. (Its objects are the template case's, under its own id.)"""
    store.put_bytes(layout.ct_key(case_id), store.get_bytes(layout.ct_key(template)))
    record = store.get_json(layout.meta_key(template))
    record.update(case_id=case_id, ct_key=layout.ct_key(case_id), imported_at=imported_at.isoformat())
    store.put_bytes(layout.meta_key(case_id), json.dumps(record).encode(), "application/json")


def _wait_tracked(stub, case_id: str, timeout_s: float = 60) -> tracking_pb2.CaseSummary:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return stub.GetCase(tracking_pb2.GetCaseRequest(case_id=case_id), metadata=ADMIN).case
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            assert time.monotonic() < deadline, f"tracking never recorded {case_id}"
            time.sleep(0.3)


def test_the_sweep_announces_what_tracking_missed_and_reports_what_storage_lacks(
    stack, fresh_database, unique, real_ct_dir
):
    from atlasloop.common.objectstore import ObjectStore

    kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"r{unique}."})
    storage_settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"reconcile-{unique}"),
        kafka=kafka,
        auth={"dev_tokens": TOKENS},
    )
    storage_service, storage_channel = start_in_process(build_storage(storage_settings), storage_settings)
    tracking_settings = TrackingSettings(
        port=0,
        health_poll_s=60,
        database=fresh_database,
        kafka=kafka,
        storage_target=f"127.0.0.1:{storage_service.port}",
        storage_token="trk",
        reconcile_interval_s=0,  # only when asked, so the test sees each sweep's whole report
        auth={"dev_tokens": TOKENS},
    )
    tracking_service, tracking_channel = start_in_process(build_tracking(tracking_settings), tracking_settings)
    producer = events.EventProducer(kafka, "test")
    engine = make_engine(fresh_database)
    try:
        storage = storage_pb2_grpc.StorageServiceStub(storage_channel)
        tracking = tracking_pb2_grpc.TrackingServiceStub(tracking_channel)
        store = ObjectStore(storage_settings.s3)

        # A case imported the normal way; with no inference here it stays in `ingested`.
        upload_id = upload_file(storage, real_ct_dir / "example_ct_sm.nii.gz", ADMIN)
        storage.ImportCase(storage_pb2.ImportCaseRequest(upload_id=upload_id, case_id="rc-1"), metadata=ADMIN)
        assert _wait_tracked(tracking, "rc-1").state == common_pb2.CASE_STATE_INGESTED
        # Ids that are prefixes of one another (S3 stores list such folders in different orders).
        _killed_import(store, "rc-1", "rc-1-old", HOUR_AGO)
        _killed_import(store, "rc-1", "rc-1.new", datetime.now(UTC))  # may still be announced by its import
        # A `case.ingested` for a case storage never held (a rolled-back import's, or a forged one).
        producer.publish(events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="rc-0-ghost"), key="x")
        _wait_tracked(tracking, "rc-0-ghost")
        with engine.begin() as connection:  # time passes: both are past the grace period
            connection.execute(
                text("UPDATE cases SET created_at = :t, updated_at = :t WHERE id IN ('rc-1', 'rc-0-ghost')"),
                {"t": HOUR_AGO},
            )

        with pytest.raises(grpc.RpcError) as err:
            tracking.Reconcile(tracking_pb2.ReconcileRequest(), metadata=[("authorization", "Bearer rev")])
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        processed = _count(engine, "SELECT count(*) FROM processed_events")
        report = tracking.Reconcile(tracking_pb2.ReconcileRequest(), metadata=ADMIN)
        assert report.storage_cases == 3
        assert list(report.announced_missing) == ["rc-1-old"]
        assert list(report.announced_stuck) == ["rc-1"]
        assert list(report.orphans) == ["rc-0-ghost"]
        assert report.deferred == 1  # rc-1.new, younger than the grace period

        recorded = _wait_tracked(tracking, "rc-1-old")
        assert recorded.state == common_pb2.CASE_STATE_INGESTED
        deadline = time.monotonic() + 30  # both announcements consumed; rc-1's changed nothing
        while _count(engine, "SELECT count(*) FROM processed_events") < processed + 2:
            assert time.monotonic() < deadline, "an announcement was not consumed"
            time.sleep(0.3)
        ingested = "SELECT count(*) FROM audit_log WHERE action = 'case:ingested' AND case_id = 'rc-1'"
        assert _count(engine, ingested) == 1

        again = tracking.Reconcile(tracking_pb2.ReconcileRequest(), metadata=ADMIN)
        assert (list(again.announced_missing), list(again.orphans), again.deferred) == ([], ["rc-0-ghost"], 1)
        assert list(again.announced_stuck) == ["rc-1"]  # still unpredicted: asked again, changes nothing
        with engine.connect() as connection:
            cases = connection.execute(text("SELECT id FROM cases ORDER BY id")).scalars().all()
        assert cases == ["rc-0-ghost", "rc-1", "rc-1-old"]  # nothing recorded twice, the orphan kept
    finally:
        producer.close()
        engine.dispose()
        for service, channel in ((tracking_service, tracking_channel), (storage_service, storage_channel)):
            channel.close()
            service.stop(0)


def _count(engine, query: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(query)).scalar() or 0)
