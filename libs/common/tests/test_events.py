"""Event encoding, decoding and topic naming (no broker needed)."""

from __future__ import annotations

import pytest

from atlasloop.common import events
from atlasloop.common.errors import InvalidInput
from atlasloop.common.settings import KafkaSettings
from atlasloop.events.v1 import events_pb2


def test_every_event_message_has_a_topic():
    with_meta = {
        m.full_name for m in events_pb2.DESCRIPTOR.message_types_by_name.values() if "meta" in m.fields_by_name
    }
    assert with_meta == {cls.DESCRIPTOR.full_name for cls in events.TOPICS}
    assert len(set(events.TOPICS.values())) == len(events.TOPICS)


def test_round_trip_keeps_type_and_id():
    event = events_pb2.CaseIngested(meta=events.new_meta("storage"), case_id="case-1")
    value, headers = events.encode(event)
    assert dict(headers)[events.ID_HEADER].decode() == event.meta.event_id
    assert events.decode(value, headers) == event


def test_unknown_type_and_missing_id_are_refused():
    with pytest.raises(InvalidInput, match="unknown event type"):
        events.decode(b"", [(events.TYPE_HEADER, b"nope.Nothing")])
    with pytest.raises(InvalidInput, match="event_id"):
        events.encode(events_pb2.CaseIngested(case_id="x"))
    with pytest.raises(InvalidInput, match="not an event type"):
        events.encode(events_pb2.EventMeta(event_id="x"))


def test_topic_prefix_applies():
    settings = KafkaSettings(topic_prefix="prod.")
    assert events.topic_for(events_pb2.ModelPublished, settings) == "prod.model.published"
