"""Dead letters: events a consumer gave up on, kept with the reason, listed and replayed by an admin.

A consumer retries a failing event a bounded number of times (``KafkaSettings.max_attempts``, with
exponential backoff; an event its handler is merely *not ready* for waits up to
``not_ready_wait_s``), then publishes it to the ``dead-letter`` topic and commits, so one poison
event never blocks its partition. An event that cannot be decoded goes there at once.

A dead letter is the original bytes and headers (event type, event id, trace context) plus
``dead-letter-*`` headers: the topic, partition, offset and key it came from, the consumer group
that gave up, the reason, the attempts and when. Its id is ``<partition>-<offset>`` on the
dead-letter topic.

Replaying publishes the original event again to its original topic, with its original event id, so
every consumer group of that topic sees it again; handlers are idempotent (those that had applied it
change nothing, the one that failed tries again). A replay is recorded as a marker on the
dead-letter topic itself (header ``dead-letter-replayed``), so the list shows who replayed what and
when, and the topic stays the only record: nothing else to back up or keep consistent.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from atlasloop.common.errors import Conflict, InvalidInput, NotFound
from atlasloop.common.settings import KafkaSettings

if TYPE_CHECKING:  # events imports this module: it dead-letters what its consumers give up on
    from atlasloop.common.events import EventProducer

TOPIC = "dead-letter"
PREFIX = "dead-letter-"
ORIGIN_HEADERS = ("topic", "partition", "offset", "key", "group", "reason", "attempts", "at")
REPLAYED = PREFIX + "replayed"
REPLAYED_BY = PREFIX + "replayed-by"
MAX_REASON = 2000
MAX_LIST = 10_000


def topic(settings: KafkaSettings) -> str:
    return settings.topic_prefix + TOPIC


def letter_headers(
    original: Iterable[tuple[str, bytes]],
    *,
    origin_topic: str,
    partition: int,
    offset: int,
    key: str,
    group: str,
    reason: str,
    attempts: int,
) -> list[tuple[str, bytes]]:
    """The original headers (never earlier dead-letter ones) and where and why the event failed."""
    kept = [(k, v) for k, v in original if not k.startswith(PREFIX)]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    values = (origin_topic, str(partition), str(offset), key, group, reason[:MAX_REASON], str(attempts), now)
    return kept + [(PREFIX + name, value.encode()) for name, value in zip(ORIGIN_HEADERS, values, strict=True)]


@dataclass
class DeadLetter:
    """One event a consumer group gave up on."""

    id: str
    topic: str
    partition: int
    offset: int
    key: str
    group: str
    reason: str
    attempts: int
    at: str
    event_type: str
    event_id: str
    value: bytes = field(repr=False)
    headers: list[tuple[str, bytes]] = field(repr=False)
    replayed_by: str = ""
    replayed_at: str = ""

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(PREFIX)]


def _text(headers: dict[str, bytes], name: str) -> str:
    return headers.get(name, b"").decode(errors="replace")


def _int(headers: dict[str, bytes], name: str) -> int:
    """A number header; 0 when absent or not a number (anyone can write to the topic)."""
    text = _text(headers, name)
    return int(text) if text.isdigit() and len(text) <= 19 else 0


def read(settings: KafkaSettings, timeout_s: float = 30.0, idle_s: float = 1.0) -> list[DeadLetter]:
    """Every dead letter on the topic, oldest first per partition, with replays folded in.

    Reads every partition from the beginning with a throwaway consumer (no group offsets are
    committed), so listing changes nothing. It stops once every partition has reported its end
    (partition EOF) with nothing new for ``idle_s``: the end a fetch reports, not the high
    watermark asked beforehand, which some brokers (Tansu) answer stale."""
    consumer = Consumer(
        settings.client_config()
        | {
            "group.id": f"dead-letter-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic(settings), timeout=timeout_s).topics.get(topic(settings))
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return []
        partitions = set(metadata.partitions)
        consumer.assign([TopicPartition(topic(settings), p, OFFSET_BEGINNING) for p in partitions])
        letters: dict[str, DeadLetter] = {}
        replays: list[tuple[str, str, str]] = []
        ended: set[int] = set()
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline and (ended != partitions or time.monotonic() - last < idle_s):
            message = consumer.poll(0.2)
            if message is None:
                continue
            partition = int(message.partition() or 0)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.add(partition)
                continue
            last = time.monotonic()
            ended.discard(partition)
            offset = int(message.offset() or 0)
            pairs = [(k, v) for k, v in message.headers() or [] if isinstance(v, bytes)]  # type: ignore[str-unpack]
            headers = dict(pairs)
            if REPLAYED in headers:
                replays.append((_text(headers, REPLAYED), _text(headers, REPLAYED_BY), _text(headers, PREFIX + "at")))
                continue
            if len(letters) >= MAX_LIST:
                continue
            letter_id = f"{partition}-{offset}"
            letters[letter_id] = DeadLetter(
                id=letter_id,
                topic=_text(headers, PREFIX + "topic"),
                partition=_int(headers, PREFIX + "partition"),
                offset=_int(headers, PREFIX + "offset"),
                key=_text(headers, PREFIX + "key"),
                group=_text(headers, PREFIX + "group"),
                reason=_text(headers, PREFIX + "reason"),
                attempts=_int(headers, PREFIX + "attempts"),
                at=_text(headers, PREFIX + "at"),
                event_type=_text(headers, "event-type"),
                event_id=_text(headers, "event-id"),
                value=message.value() or b"",
                headers=pairs,
            )
        for letter_id, by, at in replays:
            if letter_id in letters:
                letters[letter_id].replayed_by, letters[letter_id].replayed_at = by, at
        return list(letters.values())
    finally:
        consumer.close()


def find(settings: KafkaSettings, letter_id: str) -> DeadLetter:
    parts = letter_id.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 19 for p in parts):
        raise InvalidInput(f"dead letter id {letter_id[:40]!r} is not <partition>-<offset>")
    for letter in read(settings):
        if letter.id == letter_id:
            return letter
    raise NotFound(f"no dead letter {letter_id}")


def replay(settings: KafkaSettings, producer: EventProducer, letter_id: str, principal: str) -> DeadLetter:
    """Publish dead letter ``letter_id`` again to its own topic and record who replayed it.

    Only to one of this deployment's event topics (never a topic a forged header names); a letter
    already replayed is refused (Conflict), so two admins cannot double it by accident."""
    letter = find(settings, letter_id)
    if letter.replayed_by:
        raise Conflict(f"dead letter {letter_id} was replayed by {letter.replayed_by} at {letter.replayed_at}")
    from atlasloop.common.events import TOPICS

    known = {settings.topic_prefix + name for name in TOPICS.values()}
    if letter.topic not in known:
        raise InvalidInput(f"dead letter {letter_id} came from {letter.topic!r}, not one of this deployment's topics")
    producer.publish_raw(letter.topic, letter.key, letter.value, letter.original_headers())
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    marker = [(REPLAYED, letter_id.encode()), (REPLAYED_BY, principal.encode()), (PREFIX + "at", now.encode())]
    producer.publish_raw(topic(settings), letter.key, b"", marker)
    letter.replayed_by, letter.replayed_at = principal, now
    return letter
