"""A protobuf event through the real broker; a consumer group resumes from its committed offset
after both the consumer and the broker restart."""

from __future__ import annotations

import time
import uuid

import pytest

from atlasloop.common import events
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
