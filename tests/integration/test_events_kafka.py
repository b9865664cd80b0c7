"""A protobuf event through the real broker; a consumer group resumes from its committed offset
after both the consumer and the broker restart; a poison event is retried a bounded number of
times, dead-lettered with its reason, and replayed by an admin."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from atlasloop.common import dead_letters, events
from atlasloop.common.errors import Conflict, InvalidInput, NotFound, NotReady
from atlasloop.events.v1 import events_pb2

pytestmark = pytest.mark.integration


def _consume(settings, group, wanted, linger_s=0.0, timeout_s=60.0):
    """Handle ``wanted`` events, then keep polling ``linger_s`` to catch any extra delivery."""
    got = []

    def handle(event, delivery):
        got.append((event.meta.event_id, delivery.offset))

    consumer = events.EventConsumer(settings, group, [events_pb2.CaseIngested], handle)
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < wanted and time.monotonic() < deadline:
            consumer.poll_once(0.5)
        extra_until = time.monotonic() + linger_s
        while time.monotonic() < extra_until:
            consumer.poll_once(0.5)
    finally:
        consumer.close()
    return got


def test_group_resumes_from_committed_offset_after_restarts(stack):
    settings = stack.kafka_settings().model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    events.ensure_topics(settings, [events_pb2.CaseIngested])
    producer = events.EventProducer(settings, "test")
    sent = []
    for i in range(6):
        event = events_pb2.CaseIngested(meta=events.new_meta("test"), case_id="case-7")
        event.ct.key = f"cases/case-7/ct-{i}.nii.gz"
        producer.publish(event, key="case-7")  # one key: one partition, one order
        sent.append(event.meta.event_id)
    producer.close()

    first = _consume(settings, "grp", 3)
    assert [e for e, _ in first] == sent[:3]

    stack.processes.stop("kafka")
    stack.start_kafka()

    rest = _consume(settings, "grp", 3, linger_s=3.0)  # exactly the rest: no replay, no loss
    assert [e for e, _ in rest] == sent[3:]
    assert [o for _, o in rest] == [o + 3 for _, o in first]


def test_a_producer_fenced_by_an_outage_is_replaced_and_publishes_again(stack):
    """A message that timed out while the broker was away makes an idempotent producer bump its
    epoch; Tansu answers PRODUCER_FENCED, which leaves a librdkafka producer broken for good. The
    service's producer must publish again once the broker is back, not answer UNAVAILABLE until
    someone restarts the service (a fault-injection run found this)."""
    settings = _settings(stack, publish_timeout_s=6.0)
    events.ensure_topics(settings, [events_pb2.CaseIngested])
    producer = events.EventProducer(settings, "test")
    before = _ingested("before")
    producer.publish(before, key="case-5")

    stack.processes.stop("kafka", grace_s=0, sig=signal.SIGKILL)
    try:
        with pytest.raises(NotReady):
            producer.publish(_ingested("while-away"), key="case-5")
    finally:
        stack.start_kafka(timeout_s=120)

    after = [_ingested(f"after-{i}") for i in range(3)]
    for event in after:
        producer.publish(event, key="case-5")
    producer.close()
    assert producer.replaced == 1  # Tansu fenced it, as it does; the next ones went through the new one

    got = {e for e, _ in _consume(settings, "grp", 4, linger_s=2.0)}
    assert {before.meta.event_id} | {e.meta.event_id for e in after} <= got


def _settings(stack, **update):
    return stack.kafka_settings().model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."} | update)


def _ingested(case_id: str) -> events_pb2.CaseIngested:
    return events_pb2.CaseIngested(meta=events.new_meta("test"), case_id=case_id)


def test_a_poison_event_is_dead_lettered_after_bounded_retries_and_the_partition_moves_on(stack):
    settings = _settings(stack, max_attempts=3, retry_backoff_s=0.05, retry_backoff_max_s=0.2, not_ready_wait_s=1.0)
    events.ensure_topics(settings, [events_pb2.CaseIngested])
    producer = events.EventProducer(settings, "test")
    sent = [_ingested(c) for c in ("good-1", "poison", "late", "good-2")]
    for event in sent[:2]:
        producer.publish(event, key="case-9")  # one key: one partition, in order
    garbage_headers = events.encode(_ingested("garbage"))[1]  # a known type, bytes that are not one
    producer.publish_raw(
        events.topic_for(events_pb2.CaseIngested, settings), "case-9", b"\xff\xfe garbage", garbage_headers
    )
    producer.publish(sent[2], key="case-9")
    producer.publish(sent[3], key="case-9")

    handled, tries = [], {}

    def handle(event, delivery):
        tries[event.case_id] = tries.get(event.case_id, 0) + 1
        if event.case_id == "poison":
            raise ValueError("cannot apply this one")
        if event.case_id == "late":
            raise NotReady("its predecessor has not arrived")
        handled.append(event.case_id)

    consumer = events.EventConsumer(settings, "grp", [events_pb2.CaseIngested], handle)
    deadline = time.monotonic() + 60
    try:
        while "good-2" not in handled and time.monotonic() < deadline:
            consumer.poll_once(0.5)
    finally:
        consumer.close()
    assert handled == ["good-1", "good-2"]  # nothing after the poison event was blocked
    assert tries["poison"] == 3 and tries["late"] >= 2

    letters = {letter.event_id or "undecodable": letter for letter in dead_letters.read(settings)}
    assert len(letters) == 3
    poison = letters[sent[1].meta.event_id]
    assert (poison.topic, poison.key, poison.group, poison.attempts) == (
        events.topic_for(events_pb2.CaseIngested, settings),
        "case-9",
        "grp",
        3,
    )
    assert poison.reason == "ValueError: cannot apply this one"
    late = letters[sent[2].meta.event_id]
    assert late.reason.startswith("NotReady: its predecessor") and late.attempts >= 2
    garbage = [letter for letter in letters.values() if letter.reason.startswith("undecodable")]
    assert len(garbage) == 1 and garbage[0].attempts == 1

    # Replayed once the cause is gone: the same event (same id) reaches the group again, once.
    replayed = dead_letters.replay(settings, producer, poison.id, "ops")
    assert replayed.replayed_by == "ops"
    with pytest.raises(Conflict):
        dead_letters.replay(settings, producer, poison.id, "ops")
    with pytest.raises(NotFound):
        dead_letters.replay(settings, producer, "0-99999", "ops")
    with pytest.raises(InvalidInput):
        dead_letters.replay(settings, producer, "../etc", "ops")
    again = _consume(settings, "grp", 1, linger_s=2.0)
    assert [e for e, _ in again] == [sent[1].meta.event_id]
    listed = {letter.id: letter for letter in dead_letters.read(settings)}
    assert listed[poison.id].replayed_by == "ops" and not listed[late.id].replayed_by


def test_a_dead_letter_naming_a_foreign_topic_is_not_replayed(stack):
    """The dead-letter topic is writable by any producer: a forged letter cannot make a replay
    publish to a topic outside this deployment's events."""
    settings = _settings(stack)
    producer = events.EventProducer(settings, "test")
    value, headers = events.encode(_ingested("c"))
    forged = dead_letters.letter_headers(
        headers, origin_topic="other.secrets", partition=0, offset=0, key="c", group="x", reason="r", attempts=1
    )
    events.ensure_topic_names(settings, [dead_letters.topic(settings)])
    producer.publish_raw(dead_letters.topic(settings), "c", value, forged)
    (letter,) = dead_letters.read(settings)
    with pytest.raises(InvalidInput, match="not one of this deployment's topics"):
        dead_letters.replay(settings, producer, letter.id, "ops")
