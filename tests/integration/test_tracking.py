"""The tracking service's guarantees on the real PostgreSQL (and Kafka, S3 where events and label
maps travel): one holder per case under concurrency, expiring leases, an outbox relay that loses
nothing when killed or when the broker goes away, revisions on the real CT, clear refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from atlasloop.common import events
from atlasloop.common.database import make_engine
from atlasloop.common.errors import Conflict, InvalidInput, PermissionDenied, TooLarge
from atlasloop.common.storage_client import StorageClient
from atlasloop.common.transfer import upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGAN_IDS, from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking import migrate
from atlasloop.tracking.core import TrackingCore
from atlasloop.tracking.models import Case, Lease, OutboxEvent, RegionVerdict, Review, Revision
from atlasloop.tracking.revisions import Tag, Verdict
from atlasloop.tracking.settings import TrackingSettings

from .conftest import EventCollector, start_in_process

pytestmark = pytest.mark.integration


def _core(
    stack,
    database,
    unique,
    storage_target="127.0.0.1:1",
    lease_s=1800,
    token="",
    double_reads=0.0,
    max_active=3,
    max_hold_s=8 * 3600,
):
    settings = TrackingSettings(
        database=database,
        lease_s=lease_s,
        max_active_leases=max_active,
        max_lease_hold_s=max_hold_s,
        storage_target=storage_target,
        storage_token=token,
        double_read_fraction=double_reads,
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"t{unique}."}),
    )
    engine = make_engine(database)
    migrate.upgrade(engine)
    return TrackingCore(settings, engine, StorageClient(storage_target, token))


def _scored_cases(core, count, model_set="ms-1"):
    for i in range(count):
        case_id = f"case-{i:04d}"
        core.apply_event(events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id=case_id))
        core.apply_event(
            events_pb2.CasePredicted(
                meta=events.new_meta("inference"), case_id=case_id, model_set=model_set, label_version=f"ai-{i:04d}"
            )
        )
        core.apply_event(
            events_pb2.CaseScored(
                meta=events.new_meta("scoring"), case_id=case_id, model_set=model_set, priority=float(i)
            )
        )
    return [f"case-{i:04d}" for i in range(count)]


def test_eight_annotators_never_share_a_case(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique, max_active=200)  # each may take as many as it can
    cases = _scored_cases(core, 200)
    assert core.queue_cases(1, [(c, float(i), ["liver"]) for i, c in enumerate(cases)], "ops") == (200, 0)
    taken: dict[str, list[str]] = {f"ann-{i}": [] for i in range(8)}
    start = threading.Barrier(8)

    def work(name):
        start.wait()
        while (lease := core.next_case(name)) is not None:
            taken[name].append(lease.case_id)

    threads = [threading.Thread(target=work, args=(name,)) for name in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    leased = [c for got in taken.values() for c in got]
    assert len(leased) == 200 and sorted(leased) == sorted(cases)  # every case exactly once
    assert sum(1 for got in taken.values() if got) >= 2  # the work really was shared
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Lease).where(Lease.active)) == 200
        # the database itself refuses a second active lease on one case
        with pytest.raises(DBAPIError):
            session.add(
                Lease(
                    id=str(uuid.uuid4()),
                    case_id=cases[0],
                    annotator="intruder",
                    expires_at=Lease.__table__.c.expires_at.type.python_type.now(),
                    active=True,
                )
            )
            session.flush()


def test_expired_lease_is_taken_over_and_the_old_holder_refused(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique, lease_s=1)
    (case_id,) = _scored_cases(core, 1)
    core.queue_cases(1, [(case_id, 1.0, [])], "ops")
    first = core.next_case("alice")
    assert core.next_case("bob") is None
    time.sleep(1.2)  # the lease runs out
    second = core.next_case("bob")
    assert second is not None and second.case_id == case_id
    with pytest.raises(Conflict, match="expired"):
        core.renew_lease(first.lease_id, "alice")
    with pytest.raises(PermissionDenied):
        core.release_lease(second.lease_id, "alice")
    _, history = core.get_case(case_id)
    assert [h.action for h in history][-3:] == ["state:queued->leased", "state:leased->queued", "state:queued->leased"]


def test_one_annotator_cannot_hoard_the_queue_or_hold_a_case_for_ever(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique, lease_s=2, max_active=3, max_hold_s=3)
    cases = _scored_cases(core, 6)
    core.queue_cases(1, [(c, float(i), []) for i, c in enumerate(cases)], "ops")
    outcomes: list[object] = []
    start = threading.Barrier(6)
    taken_at = datetime.now(UTC)

    def grab():  # six concurrent NextCase calls by one person
        start.wait()
        try:
            outcomes.append(core.next_case("mallory"))
        except TooLarge as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    leases = [o for o in outcomes if not isinstance(o, Exception)]
    refusals = [str(o) for o in outcomes if isinstance(o, Exception)]
    assert len(leases) == 3 and len(refusals) == 3
    assert "holds 3 active leases (the limit is 3)" in refusals[0]
    assert core.next_case("alice") is not None  # others still get work

    # Renewing extends a lease, but never past its hold limit; then it is refused.
    first = leases[0]
    renewed = core.renew_lease(first.lease_id, "mallory")
    expires = renewed.expires_at if renewed.expires_at.tzinfo else renewed.expires_at.replace(tzinfo=UTC)
    assert expires <= datetime.now(UTC) + timedelta(seconds=2.1) and expires > taken_at
    time.sleep(1.1)
    core.renew_lease(first.lease_id, "mallory")
    with pytest.raises(Conflict, match="held for the most a lease may be"):
        core.renew_lease(first.lease_id, "mallory")
    time.sleep(3.2)  # every lease has run out: the limit counts only live leases
    assert core.next_case("mallory") is not None


def _relay(stack, database, unique, log_path=None):
    env = {
        **os.environ,
        "ATLASLOOP_TRACKING_DATABASE__URL": database.url,
        "ATLASLOOP_TRACKING_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_settings().bootstrap_servers,
        "ATLASLOOP_TRACKING_KAFKA__TOPIC_PREFIX": f"t{unique}.",
        "ATLASLOOP_TRACKING_KAFKA__PUBLISH_TIMEOUT_S": "3",
    }
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [sys.executable, "-m", "atlasloop.tracking.relay"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _sent(core):
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.sent_at.isnot(None)))


def _wait(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def test_killed_relay_and_broker_outage_lose_nothing(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique)
    total = 300
    cases = _scored_cases(core, total)
    events.ensure_topics(core.settings.kafka, [events_pb2.CaseQueued])
    collector = EventCollector(core.settings.kafka, [events_pb2.CaseQueued])
    for i, case_id in enumerate(cases):  # events written with their changes, none sent yet
        core.queue_cases(1, [(case_id, float(i), [])], "ops")
    with core.sessions() as session:
        expected = [row.event_id for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    relay = _relay(stack, fresh_database, unique, stack.run_dir / "relay-1.log")
    try:
        _wait(lambda: _sent(core) >= 20, 60)
        relay.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
        relay.wait(10)
        stack.processes.stop("kafka")  # and the broker goes away for a while
        relay = _relay(stack, fresh_database, unique, stack.run_dir / "relay-2.log")
        time.sleep(3)
        stalled = _sent(core)
        assert stalled < total
        time.sleep(2)
        assert _sent(core) == stalled  # nothing is marked sent while the broker is away
        stack.start_kafka()
        _wait(lambda: _sent(core) == total, 180)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(20)
    received = collector.wait_for(total, timeout_s=180)
    deliveries = list(collector.deliveries)
    collector.close()
    first_seen = list(dict.fromkeys(e.meta.event_id for e in received))
    assert sorted(first_seen) == sorted(expected)  # nothing lost
    assert len(received) - len(first_seen) <= 20  # re-sends only of the killed batch, same ids
    position = {event_id: i for i, event_id in enumerate(expected)}
    per_partition: dict[int, list[int]] = {}
    seen: set[str] = set()
    for event, delivery in zip(received, deliveries, strict=True):
        if event.meta.event_id not in seen:
            seen.add(event.meta.event_id)
            per_partition.setdefault(delivery.partition, []).append(position[event.meta.event_id])
    assert all(order == sorted(order) for order in per_partition.values())  # nothing reordered


@pytest.fixture
def storage_service(stack, unique):
    from atlasloop.storage.app import build
    from atlasloop.storage.settings import StorageSettings

    settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"trk-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"t{unique}."}),
        auth={
            "dev_tokens": {
                "svc": "tracking:service",
                "inf": "inference:service",
                "adm": "ops:admin",
                "ann": "alice:annotator",
            }
        },
    )
    service, channel = start_in_process(build(settings), settings)
    from atlasloop.storage.v1 import storage_pb2_grpc

    yield f"127.0.0.1:{service.port}", storage_pb2_grpc.StorageServiceStub(channel)
    channel.close()
    service.stop(0)


def test_revision_on_the_real_ct_suggests_missed_region(
    stack, fresh_database, unique, storage_service, real_ct_dir, tmp_path
):
    target, storage = storage_service
    admin, annotator = [("authorization", "Bearer adm")], [("authorization", "Bearer ann")]
    core = _core(stack, fresh_database, unique, storage_target=target, token="svc", double_reads=1.0)
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    truth = from_totalsegmentator(seg.array)
    reply = storage.ImportCase(
        storage_pb2.ImportCaseRequest(
            upload_id=upload_file(storage, real_ct_dir / "example_ct_sm.nii.gz", admin), case_id="real-1"
        ),
        metadata=admin,
    )
    ai = truth.copy()
    liver = np.argwhere(ai == ORGAN_IDS["liver"])
    lo = liver.min(axis=0)
    ai[lo[0] : lo[0] + 14, :, :][ai[lo[0] : lo[0] + 14, :, :] == ORGAN_IDS["liver"]] = 0  # a slab of liver missed
    save_nifti(Volume(ai, seg.affine), tmp_path / "ai.nii.gz")
    ai_version = storage.WriteLabelVersion(
        storage_pb2.WriteLabelVersionRequest(
            case_id="real-1",
            upload_id=upload_file(storage, tmp_path / "ai.nii.gz", admin),
            source=common_pb2.LABEL_SOURCE_AI,
            model_set="ms-1",
        ),
        metadata=[("authorization", "Bearer inf")],  # AI labels come from the inference service
    ).version.label_version
    core.apply_event(
        events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="real-1", geometry=reply.info.geometry)
    )
    core.apply_event(
        events_pb2.CasePredicted(
            meta=events.new_meta("inference"), case_id="real-1", model_set="ms-1", label_version=ai_version
        )
    )
    core.apply_event(
        events_pb2.CaseScored(meta=events.new_meta("scoring"), case_id="real-1", model_set="ms-1", priority=5.0)
    )
    core.queue_cases(1, [("real-1", 5.0, ["liver"])], "ops")
    lease = core.next_case("alice")
    save_nifti(Volume(truth, seg.affine), tmp_path / "revised.nii.gz")
    upload = upload_file(storage, tmp_path / "revised.nii.gz", annotator)

    with pytest.raises(InvalidInput, match="taxonomy"):  # refused before anything is stored
        core.submit_revision(lease.lease_id, "alice", upload, ["liver"], [Tag("liver", "typo")], 60, "")
    with pytest.raises(InvalidInput, match="seconds_spent"):
        core.submit_revision(lease.lease_id, "alice", upload, ["liver"], [], -1, "")
    with pytest.raises(PermissionDenied):
        core.submit_revision(lease.lease_id, "mallory", upload, ["liver"], [], 60, "")
    box = ((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    fixed, clean = Verdict("liver", *box, "fixed"), Verdict("spleen", *box, "not_an_error")
    for bad, reason in [
        (Verdict("liver", *box, "maybe"), "fixed, not_an_error"),
        (Verdict("brain", *box, "fixed"), "unknown organ"),
        (Verdict("liver", (0.0, 0.0), (1.0, 1.0, 1.0), "fixed"), "three finite"),
        (Verdict("liver", (0.0, 0.0, float("nan")), (1.0, 1.0, 1.0), "fixed"), "three finite"),
        (Verdict("liver", (5.0, 0.0, 0.0), (1.0, 1.0, 1.0), "fixed"), "above max_mm"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            core.submit_revision(lease.lease_id, "alice", upload, ["liver"], [], 60, "", [fixed, bad])
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Revision)) == 0
        assert session.scalar(select(func.count()).select_from(RegionVerdict)) == 0

    result = core.submit_revision(
        lease.lease_id, "alice", upload, ["liver"], [Tag("liver", "missed_region")], 420, "upper slab", [fixed, clean]
    )
    liver_diff = next(d for d in result.diffs if d.organ == "liver")
    assert "missed_region" in liver_diff.suggested and liver_diff.voxels_added > 0 and liver_diff.voxels_removed == 0
    assert all(not d.suggested for d in result.diffs if d.organ != "liver")
    assert core.submit_review(result.revision_id, "rita", "approve", "", []) == "approved"
    # The same submission and the same verdict again (their answers lost): what the first made, nothing new.
    retried = core.submit_revision(
        lease.lease_id, "alice", upload, ["liver"], [Tag("liver", "missed_region")], 420, "upper slab"
    )
    assert (retried.revision_id, retried.label_version) == (result.revision_id, result.label_version)
    assert [d.as_json() for d in retried.diffs] == [d.as_json() for d in result.diffs]
    assert core.submit_review(result.revision_id, "rita", "approve", "", []) == "approved"
    with pytest.raises(Conflict, match="already reviewed"):  # a different verdict is not a retry
        core.submit_review(result.revision_id, "rita", "reject", "changed my mind", [])
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Revision)) == 1
        assert session.scalar(select(func.count()).select_from(Review)) == 1
    view, history = core.get_case("real-1")
    case = view.case
    assert case.state == "approved" and case.current_label_version == result.label_version
    assert [h.action for h in history if h.action.startswith("state:")] == [
        "state:ingested->predicted",
        "state:predicted->scored",
        "state:scored->queued",
        "state:queued->leased",
        "state:leased->revised",
        "state:revised->approved",
    ]
    stats = core.statistics()
    assert stats.minutes_per_round == {1: 7.0} and stats.revisions_per_annotator == {"alice": 1}
    assert next(r for r in stats.organs if r.organ == "liver").tag_counts == {"missed_region": 1}
    verdicts = {r.organ: (r.regions_fixed, r.regions_not_an_error) for r in stats.organs}
    assert verdicts["liver"] == (1, 0) and verdicts["spleen"] == (0, 1)  # stored with the revision, once

    # Double read (fraction 1.0): never offered to the first annotator; a second reader starts from
    # the AI label; agreement is recorded; the case and its label stay as approved.
    assert core.next_case("alice") is None
    second = core.next_case("bob")
    assert second.double_read and second.case_id == "real-1" and second.label_version == ai_version
    again = upload_file(storage, tmp_path / "revised.nii.gz", annotator)
    core.submit_revision(second.lease_id, "bob", again, ["liver"], [], 300, "independent reading")
    case = core.get_case("real-1")[0].case
    assert case.state == "approved" and case.current_label_version == result.label_version
    liver = next(r for r in core.statistics().organs if r.organ == "liver")
    assert liver.double_reads == 1 and liver.double_read_dice == 1.0  # both readers drew the same liver
    assert core.statistics().revisions_per_annotator == {"alice": 1}  # double reads are not dataset revisions
    assert core.next_case("carol") is None


def test_redelivered_events_change_nothing_and_audit_is_append_only(stack, fresh_database, unique):
    core = _core(stack, fresh_database, unique)
    event = events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="dup-1")
    assert core.apply_event(event) is True and core.apply_event(event) is False
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
    with pytest.raises(DBAPIError, match="append-only"), core.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET principal = 'someone else'"))


def test_grpc_surface_queue_next_case_and_refusals(stack, fresh_database, unique):
    import grpc

    from atlasloop.tracking.app import build
    from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

    settings = TrackingSettings(
        port=0,
        health_poll_s=60,
        database=fresh_database,
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"g{unique}."}),
        auth={"dev_tokens": {"adm": "ops:admin", "ann": "alice:annotator", "rev": "rita:reviewer"}},
    )
    service, channel = start_in_process(build(settings), settings)
    try:
        core = TrackingCore(settings, make_engine(fresh_database), StorageClient("127.0.0.1:1", ""))
        _scored_cases(core, 3)
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        adm, ann, rev = ([("authorization", f"Bearer {t}")] for t in ("adm", "ann", "rev"))
        assert stub.CreateProject(tracking_pb2.CreateProjectRequest(name="pilot"), metadata=adm).project_id
        reply = stub.QueueCases(
            tracking_pb2.QueueCasesRequest(
                round=1,
                cases=[tracking_pb2.QueuedCase(case_id="case-0001", priority=9, organs=[ORGAN_IDS["pancreas"]])],
            ),
            metadata=adm,
        )
        assert (reply.queued, reply.already_queued) == (1, 0)
        with pytest.raises(grpc.RpcError) as err:
            stub.NextCase(tracking_pb2.NextCaseRequest(), metadata=rev)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        got = stub.NextCase(tracking_pb2.NextCaseRequest(), metadata=ann)
        assert got.lease.case_id == "case-0001" and list(got.organs) == [ORGAN_IDS["pancreas"]]
        assert got.label_version == "ai-0001"
        assert not stub.NextCase(tracking_pb2.NextCaseRequest(), metadata=ann).HasField("lease")
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitRevision(
                tracking_pb2.SubmitRevisionRequest(lease_id=got.lease.lease_id, seconds_spent=-5), metadata=ann
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "seconds_spent" in err.value.details()
        unjudged = tracking_pb2.RegionVerdict(organ=ORGAN_IDS["liver"])  # no verdict given
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitRevision(
                tracking_pb2.SubmitRevisionRequest(lease_id=got.lease.lease_id, region_verdicts=[unjudged]),
                metadata=ann,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "FIXED or NOT_AN_ERROR" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:  # the reviewer's worklist is not the annotator's
            stub.ListRevisions(tracking_pb2.ListRevisionsRequest(), metadata=ann)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert list(stub.ListRevisions(tracking_pb2.ListRevisionsRequest(), metadata=rev).revisions) == []
        with pytest.raises(grpc.RpcError) as err:
            stub.ListRevisions(tracking_pb2.ListRevisionsRequest(limit=501), metadata=rev)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        case = stub.GetCase(tracking_pb2.GetCaseRequest(case_id="case-0001"), metadata=ann)
        assert case.case.state == common_pb2.CASE_STATE_LEASED and case.history[-1].principal == "alice"
        listed = stub.ListCases(tracking_pb2.ListCasesRequest(states=[common_pb2.CASE_STATE_SCORED]), metadata=rev)
        assert sorted(c.case_id for c in listed.cases) == ["case-0000", "case-0002"]
    finally:
        channel.close()
        service.stop(0)


def test_dead_letters_are_listed_and_replayed_by_an_admin_only(stack, fresh_database, unique):
    """An event tracking's consumer cannot apply does not block its partition: it is dead-lettered
    with the reason; an admin lists it over gRPC and replays it (once); others are refused."""
    import grpc

    from atlasloop.tracking.app import build
    from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc

    kafka = stack.kafka_settings().model_copy(
        update={"topic_prefix": f"d{unique}.", "max_attempts": 2, "retry_backoff_s": 0.05}
    )
    settings = TrackingSettings(
        port=0,
        health_poll_s=60,
        database=fresh_database,
        kafka=kafka,
        auth={"dev_tokens": {"adm": "ops:admin", "ann": "alice:annotator"}},
    )
    service, channel = start_in_process(build(settings), settings)
    producer = events.EventProducer(kafka, "test")
    try:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        adm, ann = ([("authorization", f"Bearer {t}")] for t in ("adm", "ann"))
        headers = events.encode(events_pb2.CasePredicted(meta=events.new_meta("inference"), case_id="case-x"))[1]
        topic = events.topic_for(events_pb2.CasePredicted, kafka)
        producer.publish(events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="case-y"), key="case-y")
        producer.publish_raw(topic, "case-y", b"\xff not a CasePredicted", headers)  # then one behind it
        predicted = events_pb2.CasePredicted(
            meta=events.new_meta("inference"), case_id="case-y", model_set="ms-1", label_version="ai-y"
        )
        producer.publish(predicted, key="case-y")

        def letters(include_replayed=False):
            request = tracking_pb2.ListDeadLettersRequest(include_replayed=include_replayed)
            return list(stub.ListDeadLetters(request, metadata=adm).letters)

        deadline = time.monotonic() + 60
        while not (waiting := letters()):
            assert time.monotonic() < deadline, "the undecodable event was never dead-lettered"
            time.sleep(0.5)
        (letter,) = waiting
        assert (letter.topic, letter.key, letter.consumer_group) == (topic, "case-y", "tracking")
        assert letter.reason.startswith("undecodable") and letter.attempts == 1
        deadline = time.monotonic() + 30  # the partition moved on: the next event was applied
        while not [
            c for c in stub.ListCases(tracking_pb2.ListCasesRequest(), metadata=adm).cases if c.case_id == "case-y"
        ]:
            assert time.monotonic() < deadline, "the event after the dead letter was not applied"
            time.sleep(0.5)

        with pytest.raises(grpc.RpcError) as err:
            stub.ListDeadLetters(tracking_pb2.ListDeadLettersRequest(), metadata=ann)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            stub.ReplayDeadLetter(tracking_pb2.ReplayDeadLetterRequest(id="x/../1"), metadata=adm)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        replayed = stub.ReplayDeadLetter(tracking_pb2.ReplayDeadLetterRequest(id=letter.id), metadata=adm).letter
        assert replayed.replayed_by == "ops" and replayed.event_id == letter.event_id
        with pytest.raises(grpc.RpcError) as err:
            stub.ReplayDeadLetter(tracking_pb2.ReplayDeadLetterRequest(id=letter.id), metadata=adm)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "replayed by ops" in err.value.details()
        # Still undecodable: the replay is dead-lettered again, as a new letter; the first is marked.
        deadline = time.monotonic() + 60
        while len(everything := letters(include_replayed=True)) < 2:
            assert time.monotonic() < deadline, f"the replayed event never came back: {everything}"
            time.sleep(0.5)
        assert [lt.replayed_by for lt in everything if lt.id == letter.id] == ["ops"]
        (second,) = letters()
        assert second.id != letter.id and second.event_id == letter.event_id

        # The same from a terminal: list (JSON), replay, and a refusal as one line with its code.
        env = {**os.environ, "ATLASLOOP_TRACKING_TARGET": f"127.0.0.1:{service.port}", "ATLASLOOP_TOKEN": "adm"}

        def cli(*args):
            return subprocess.run(
                [sys.executable, "-m", "atlasloop.cli", "dead-letters", *args], env=env, capture_output=True, text=True
            )

        listed = cli("--json")
        assert listed.returncode == 0, listed.stderr
        assert [row["id"] for row in json.loads(listed.stdout)] == [second.id]
        replay = cli("replay", second.id)
        assert replay.returncode == 0 and f"replayed {second.id} to {topic}" in replay.stdout
        again = cli("replay", second.id)
        assert again.returncode != 0 and "replayed by ops" in again.stderr and len(again.stderr.splitlines()) == 1
    finally:
        producer.close()
        channel.close()
        service.stop(0)
