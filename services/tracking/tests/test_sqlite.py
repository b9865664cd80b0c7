"""The embedded default: the same migrations and queue code on SQLite (no server needed)."""

from __future__ import annotations

from atlasloop.common import events
from atlasloop.common.database import make_engine
from atlasloop.common.settings import DatabaseSettings
from atlasloop.common.storage_client import StorageClient
from atlasloop.events.v1 import events_pb2
from atlasloop.tracking import migrate
from atlasloop.tracking.core import TrackingCore
from atlasloop.tracking.settings import TrackingSettings


def test_queue_and_leases_on_sqlite(tmp_path):
    database = DatabaseSettings(url=f"sqlite:///{tmp_path / 'tracking.db'}")
    engine = make_engine(database)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # idempotent
    core = TrackingCore(TrackingSettings(database=database), engine, StorageClient("127.0.0.1:1", ""))
    for i in range(3):
        case_id = f"c{i}"
        assert core.apply_event(events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id=case_id))
        core.apply_event(
            events_pb2.CasePredicted(
                meta=events.new_meta("inference"), case_id=case_id, model_set="ms", label_version=f"v{i}"
            )
        )
        core.apply_event(
            events_pb2.CaseScored(meta=events.new_meta("scoring"), case_id=case_id, model_set="ms", priority=float(i))
        )
    assert core.queue_cases(1, [(f"c{i}", float(i), ["liver"]) for i in range(3)], "ops") == (3, 0)
    assert core.queue_cases(1, [("c0", 0.0, [])], "ops") == (0, 1)
    first = core.next_case("alice")
    assert first.case_id == "c2" and first.organs == ["liver"]
    core.release_lease(first.lease_id, "alice")
    assert core.next_case("bob").case_id == "c2"
    assert core.next_case("carol").case_id == "c1"
    cases, token = core.list_cases("", ["leased"], 10, "")
    assert sorted(c.case.id for c in cases) == ["c1", "c2"] and token == ""
