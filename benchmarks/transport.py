"""Foundation benchmark: object-store and event throughput through the shared clients.

Compares the shared ``ObjectStore`` against the raw ``minio`` client on the same 64 MiB object
(the wrapper hashes while it streams, so the ratio shows what checksumming costs), and measures
synchronous (durable) event publishing against fire-and-flush batching on the same broker.
"""

from __future__ import annotations

import io
import time
import uuid

import numpy as np

from atlasloop.common import events
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from benchmarks.machine import median

SIZE = 64 * 1024 * 1024
REPEATS = 5


def object_store(stack) -> list[str]:
    store = ObjectStore(stack.s3_settings())
    store.check_bucket()
    data = np.random.default_rng(0).bytes(SIZE)
    wrapped, raw, get = [], [], []
    for i in range(REPEATS):
        start = time.perf_counter()
        store.put_stream(f"bench/w{i}", io.BytesIO(data), SIZE)
        wrapped.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.client.put_object(store.bucket, f"bench/r{i}", io.BytesIO(data), SIZE, part_size=16 * 2**20)
        raw.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in store.iter_chunks(f"bench/w{i}"):
            pass
        get.append(time.perf_counter() - start)
    mib = SIZE / 2**20
    return [
        f"S3 put, ObjectStore (sha256 while streaming): {mib / median(wrapped):7.1f} MiB/s",
        f"S3 put, raw minio client:                     {mib / median(raw):7.1f} MiB/s",
        f"  ratio ObjectStore/raw (time):               {median(wrapped) / median(raw):7.2f}",
        f"S3 get, ObjectStore chunked:                  {mib / median(get):7.1f} MiB/s",
    ]


def kafka(stack, count: int = 200) -> list[str]:
    settings = stack.kafka_settings().model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}."})
    events.ensure_topics(settings, [events_pb2.CaseIngested])
    producer = events.EventProducer(settings, "bench")
    batch = [events_pb2.CaseIngested(meta=events.new_meta("bench"), case_id=f"c{i}") for i in range(count)]
    start = time.perf_counter()
    for event in batch:
        producer.publish(event, key=event.case_id)
    durable = time.perf_counter() - start
    topic = events.topic_for(events_pb2.CaseIngested, settings)
    start = time.perf_counter()
    for event in batch:
        producer._producer.produce(topic, key=event.case_id.encode(), value=event.SerializeToString())
    producer._producer.flush(30)
    batched = time.perf_counter() - start
    return [
        f"Kafka publish, durable one by one: {count / durable:8.0f} events/s ({1000 * durable / count:.2f} ms each)",
        f"Kafka publish, batched then flush: {count / batched:8.0f} events/s",
        f"  ratio durable/batched (time):    {durable / batched:8.1f}",
    ]
