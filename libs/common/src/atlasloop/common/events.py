"""Kafka events: one protobuf message type per topic, keyed by case id (or model name).

Delivery is at least once. The producer is idempotent and waits for the broker's acknowledgement
before :meth:`EventProducer.publish` returns, so a caller that publishes after making its data
durable never reports an event that was not stored. The consumer commits an offset only after its
handler returned, so a crash re-delivers; handlers must be idempotent (deduplicate on
``meta.event_id`` or a natural key). A handler that keeps failing gets a bounded number of tries
with backoff; then the event is dead-lettered with the reason (:mod:`atlasloop.common.dead_letters`)
and its partition moves on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from atlasloop.common import dead_letters, metrics, tracing
from atlasloop.common.errors import InvalidInput, NotReady
from atlasloop.common.outages import outage
from atlasloop.common.settings import KafkaSettings
from atlasloop.events.v1 import events_pb2

log = logging.getLogger(__name__)

TOPICS: dict[type[ProtoMessage], str] = {
    events_pb2.CaseIngested: "case.ingested",
    events_pb2.CasePredicted: "case.predicted",
    events_pb2.CaseScored: "case.scored",
    events_pb2.CaseQueued: "case.queued",
    events_pb2.AnnotationRevised: "annotation.revised",
    events_pb2.AnnotationApproved: "annotation.approved",
    events_pb2.TrainingRequested: "training.requested",
    events_pb2.TrainingProgress: "training.progress",
    events_pb2.TrainingCompleted: "training.completed",
    events_pb2.ModelPublished: "model.published",
}
_BY_NAME = {cls.DESCRIPTOR.full_name: cls for cls in TOPICS}
TYPE_HEADER = "event-type"
# Errors after which a producer never delivers again. librdkafka flags some as fatal; a fenced
# idempotent producer (PRODUCER_FENCED from a broker that refuses an epoch bump) it reports in each
# delivery without the flag.
_BROKEN_PRODUCER = {
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError._FENCED,
    KafkaError._FATAL,
}
ID_HEADER = "event-id"


def topic_for(event_type: type[ProtoMessage], settings: KafkaSettings) -> str:
    return settings.topic_prefix + TOPICS[event_type]


def new_meta(producer: str, correlation_id: str = "") -> events_pb2.EventMeta:
    """A fresh envelope: new event id, now, who produced it."""
    now = Timestamp()
    now.GetCurrentTime()
    return events_pb2.EventMeta(
        event_id=str(uuid.uuid4()), occurred_at=now, producer=producer, correlation_id=correlation_id
    )


def ensure_topics(settings: KafkaSettings, event_types: Iterable[type[ProtoMessage]] = TOPICS) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    ensure_topic_names(settings, [topic_for(t, settings) for t in event_types])


def ensure_topic_names(settings: KafkaSettings, wanted: list[str]) -> None:
    admin = AdminClient(settings.client_config())
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(t, num_partitions=settings.partitions, replication_factor=1) for t in wanted if t not in existing
    ]
    if not missing:
        return
    for topic, future in admin.create_topics(missing).items():
        try:
            future.result(15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic", extra={"topic": topic})


def encode(event: ProtoMessage) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Serialise an event with the headers consumers dispatch and deduplicate on."""
    if type(event) not in TOPICS:
        raise InvalidInput(f"{type(event).__name__} is not an event type")
    meta = event.meta  # type: ignore[attr-defined]
    if not meta.event_id:
        raise InvalidInput("event has no meta.event_id")
    headers = [(TYPE_HEADER, event.DESCRIPTOR.full_name.encode()), (ID_HEADER, meta.event_id.encode())]
    return event.SerializeToString(), headers


def decode(value: bytes, headers: Iterable[tuple[str, bytes]] | None) -> ProtoMessage:
    """Parse an event from its bytes and ``event-type`` header."""
    type_name = dict(headers or ()).get(TYPE_HEADER, b"").decode()
    cls = _BY_NAME.get(type_name)
    if cls is None:
        raise InvalidInput(f"unknown event type {type_name!r}")
    try:
        return cls.FromString(value)
    except DecodeError as exc:
        raise InvalidInput(f"undecodable {type_name}: {exc}") from None


class EventProducer:
    """Publish events synchronously: :meth:`publish` returns once the broker has them.

    A librdkafka producer that meets a fatal error stays broken: every later message fails the
    same way. This happens after a broker outage: a message that timed out makes an idempotent
    producer bump its epoch (KIP-360), and a broker that does not support the bump (Tansu answers
    PRODUCER_FENCED) leaves it fenced for good, so a service would answer UNAVAILABLE until it was
    restarted. Such an error therefore replaces the producer with a new one (a new producer id) and
    sends the message once more on it; delivery stays at least once, as the module says.
    """

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._lock = threading.Lock()  # guards the swap of a fenced producer; publishing is concurrent
        self._producer = self._new_producer()
        self.replaced = 0  # producers replaced after a fatal error, for logs and tests

    def _new_producer(self) -> Producer:
        return Producer(
            self._settings.client_config()
            | {
                "client.id": self._client_id,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": int(self._settings.publish_timeout_s * 1000 * 0.75),
            }
        )

    def publish(self, event: ProtoMessage, key: str, context: Mapping[str, str] | None = None) -> None:
        """Publish ``event``; the trace context (``context``, else the current one) travels in its headers."""
        value, headers = encode(event)
        carried = tracing.current_headers() if context is None else context
        headers += [(name, text.encode()) for name, text in carried.items()]
        self.publish_raw(topic_for(type(event), self._settings), key, value, headers)

    def publish_raw(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Publish already-encoded bytes (the outbox relay stores events encoded)."""
        producer = self._producer
        error = self._send(producer, topic, key, value, headers)
        if error is not None and _broken(error):
            log.warning("producer is broken for good; replacing it", extra={"topic": topic, "error": str(error)})
            producer = self._replace(producer)
            error = self._send(producer, topic, key, value, headers)
        if error is not None:
            raise NotReady(f"broker refused an event on {topic}: {error}")
        metrics.published(topic)

    def _send(
        self, producer: Producer, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]
    ) -> KafkaError | None:
        """Produce one message and wait for its acknowledgement; the delivery error, if any."""
        timeout_s = self._settings.publish_timeout_s
        outcome: dict[str, KafkaError | None] = {}

        def delivered(error: KafkaError | None, _message: Message) -> None:
            outcome["error"] = error

        try:
            producer.produce(topic, value=value, key=key.encode(), headers=list(headers), on_delivery=delivered)
        except KafkaException as exc:  # refused before queueing: a fatal state, or a full queue
            error = exc.args[0]
            if isinstance(error, KafkaError) and _broken(error):
                return error
            raise
        producer.flush(timeout_s)
        if "error" not in outcome:
            raise NotReady(f"broker did not acknowledge an event on {topic} within {timeout_s:.0f} s")
        return outcome["error"]

    def _replace(self, failed: Producer) -> Producer:
        """A new producer in place of ``failed``, unless another thread already replaced it."""
        with self._lock:
            if self._producer is failed:
                failed.purge()  # its queue can never be delivered; dropping it frees the handle
                self._producer = self._new_producer()
                self.replaced += 1
            return self._producer

    def close(self) -> None:
        self._producer.flush(5)


def _broken(error: KafkaError) -> bool:
    return error.fatal() or error.code() in _BROKEN_PRODUCER


@dataclass(frozen=True)
class Delivery:
    """Where a consumed event came from."""

    topic: str
    partition: int
    offset: int
    key: str


Handler = Callable[[Any, Delivery], object]  # any event message; what it returns is ignored


class EventConsumer:
    """A consumer-group member that commits each offset after its handler succeeded."""

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        event_types: Iterable[type[ProtoMessage]],
        handler: Handler,
    ) -> None:
        self._handler = handler
        self._settings = settings
        self._group = group_id
        self._failing: dict[tuple[str, int], _Failing] = {}  # one entry per partition at most
        self._dead_letter_producer: EventProducer | None = None
        self._sleep: Callable[[float], object] = time.sleep
        event_types = list(event_types)
        if settings.create_topics:  # subscribing to a topic that does not exist yet would idle until a refresh
            ensure_topics(settings, event_types)
        self._consumer = Consumer(
            settings.client_config()
            | {
                # Deployments sharing a broker (told apart by their topic prefix) never share a group.
                "group.id": settings.topic_prefix + group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": settings.session_timeout_ms,
                # Notice topics created after subscribing (by an operator or another service) in seconds,
                # not after librdkafka's default five minutes.
                "topic.metadata.refresh.interval.ms": 5000,
                # librdkafka's statistics every few seconds: the consumer lag metric
                "statistics.interval.ms": metrics.KAFKA_STATS_INTERVAL_MS,
                "stats_cb": metrics.record_kafka_lag,
            }
        )
        self._consumer.subscribe([topic_for(t, settings) for t in event_types])

    def poll_once(self, timeout_s: float = 1.0) -> bool:
        """Handle at most one event; True when one was handled and committed."""
        message = self._consumer.poll(timeout_s)
        if message is None:
            return False
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(error)})
            return False
        key = message.key() or b""
        delivery = Delivery(
            str(message.topic()),
            int(message.partition() or 0),
            int(message.offset() or 0),
            key.decode() if isinstance(key, bytes) else key,
        )
        headers = [(k, v) for k, v in message.headers() or [] if isinstance(v, bytes)]  # type: ignore[str-unpack]
        try:
            event = decode(message.value() or b"", headers)
        except InvalidInput as exc:  # no retry can help: dead-lettered at once
            log.error("undecodable event", extra={"reason": str(exc), "topic": delivery.topic})
            return self._give_up(message, delivery, headers, f"undecodable: {exc}", 1)
        try:
            with tracing.span(
                f"consume {delivery.topic}",
                tracing.headers_from_kafka(headers),
                tracing.SpanKind.CONSUMER,
                {"messaging.destination": delivery.topic, "case_id": delivery.key},
            ):
                self._handler(event, delivery)
        except Exception as exc:  # noqa: BLE001 - any handler failure: retried, then dead-lettered
            return self._failed(message, delivery, headers, exc)
        self._failing.pop((delivery.topic, delivery.partition), None)
        metrics.consumed(delivery.topic, "handled")
        return self._commit(message)

    def _failed(self, message: Message, delivery: Delivery, headers: list[tuple[str, bytes]], exc: Exception) -> bool:
        """Retry with backoff (seek back to the event), until its tries are spent: then dead-letter it.

        ``NotReady`` (a predecessor event or a dependency not there yet) and a dependency's outage
        (``outages``: S3, the database, a peer service or the broker away) are waits, counted in
        time (``not_ready_wait_s``); any other failure in tries (``max_attempts``)."""
        where = (delivery.topic, delivery.partition)
        failing = self._failing.get(where)
        if failing is None or failing.offset != delivery.offset:
            failing = self._failing[where] = _Failing(delivery.offset, 0, time.monotonic())
        failing.attempts += 1
        waited_s = time.monotonic() - failing.since
        waiting = outage(exc)
        if waiting:
            spent = waited_s >= self._settings.not_ready_wait_s
            log.info("event not handled yet; will retry", extra={"topic": delivery.topic, "reason": waiting})
        else:
            spent = failing.attempts >= self._settings.max_attempts
            log.error(
                "event handler failed",
                exc_info=True,
                extra={"topic": delivery.topic, "offset": delivery.offset, "attempt": failing.attempts},
            )
        if spent:  # written to the dead-letter topic and committed, or (broker away) sought back
            self._give_up(message, delivery, headers, f"{type(exc).__name__}: {exc}", failing.attempts)
            return False
        metrics.consumed(delivery.topic, "retried")
        self._consumer.seek(TopicPartition(delivery.topic, delivery.partition, delivery.offset))
        # A wait for a predecessor is usually over in a moment: try again at the base interval. A
        # failure backs off, doubling, so a broken dependency is not hammered.
        doubling = 0 if isinstance(exc, NotReady) else min(failing.attempts - 1, 20)
        self._sleep(min(self._settings.retry_backoff_s * 2**doubling, self._settings.retry_backoff_max_s))
        return False

    def _give_up(
        self, message: Message, delivery: Delivery, headers: list[tuple[str, bytes]], reason: str, attempts: int
    ) -> bool:
        """Publish the event to the dead-letter topic, then commit it; False when the dead letter
        could not be written (the event stays, and is tried again)."""
        letter = dead_letters.letter_headers(
            headers,
            origin_topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            group=self._group,
            reason=reason,
            attempts=attempts,
        )
        try:
            if self._dead_letter_producer is None:
                if self._settings.create_topics:
                    ensure_topic_names(self._settings, [dead_letters.topic(self._settings)])
                self._dead_letter_producer = EventProducer(self._settings, f"{self._group}-dead-letters")
            self._dead_letter_producer.publish_raw(
                dead_letters.topic(self._settings), delivery.key, message.value() or b"", letter
            )
        except (NotReady, KafkaException) as exc:  # the broker is away: the event stays and is tried again
            log.warning("cannot dead-letter an event yet", extra={"topic": delivery.topic, "reason": str(exc)})
            self._consumer.seek(TopicPartition(delivery.topic, delivery.partition, delivery.offset))
            self._sleep(self._settings.retry_backoff_max_s)
            return False
        log.error(
            "event dead-lettered",
            extra={"topic": delivery.topic, "offset": delivery.offset, "group": self._group, "reason": reason},
        )
        metrics.consumed(delivery.topic, "dead-lettered")
        self._failing.pop((delivery.topic, delivery.partition), None)
        return self._commit(message) or True

    def _commit(self, message: Message) -> bool:
        """Commit after handling. A commit the group refuses (this member was evicted, for example
        when the broker answered heartbeats too slowly) is not fatal: the partition's new owner
        gets the event again, and handlers are idempotent."""
        try:
            self._consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit refused; the event will be delivered again", extra={"error": str(exc)})
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        self._sleep = stop.wait  # a backoff ends when the service stops
        while not stop.is_set():
            self.poll_once()

    def close(self) -> None:
        self._consumer.close()
        if self._dead_letter_producer is not None:
            self._dead_letter_producer.close()


@dataclass
class _Failing:
    """The event a partition is stuck on: its offset, the tries so far, since when."""

    offset: int
    attempts: int
    since: float


class ConsumerThread:
    """A consumer-group member in a background thread, for a service's lifetime.

    It keeps trying to join while the broker is unreachable (logging why), so a service that starts
    before its broker still consumes once the broker answers; ``stop`` leaves the group cleanly.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        event_types: Iterable[type[ProtoMessage]],
        handler: Handler,
        retry_s: float = 2.0,
    ) -> None:
        self._args = (settings, group_id, list(event_types), handler)
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"consumer-{group_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = EventConsumer(*self._args)
            except Exception:  # the broker is not up yet, or topics cannot be made: retry
                log.warning("event consumer cannot start yet; retrying", exc_info=True)
                self._stop.wait(self._retry_s)
                continue
            try:
                consumer.run(self._stop)
            except Exception:  # a consumer must outlive any one failure: rejoin
                log.exception("event consumer failed; rejoining the group")
                self._stop.wait(self._retry_s)
            finally:
                try:
                    consumer.close()
                except Exception:  # leaving a group we were already evicted from
                    log.warning("event consumer did not close cleanly", exc_info=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a service stopped before it started consuming
            self._thread.join(15)
