"""Shared by the confluent-kafka scenarios: test records, delivery bookkeeping, read-back.

A record is (key: bytes, value: bytes, headers: list[(str, bytes)]). Every check compares
bytes, so a broker that re-encodes, reorders or drops anything is caught.
"""

import random
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def make_records(tag, count, seed):
    """Keyed records with headers; values alternate compressible text and random bytes (all
    byte values, including NUL and newlines), lengths 1..~3000 (librdkafka
    does not tell an empty value from a null one)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        key = f"{tag}-{i}".encode()
        if i % 2 == 0:
            value = (f"{tag} record {i} " * rng.randint(1, 120)).encode()
        else:
            value = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
        headers = [("i", str(i).encode()), ("bin", bytes([0, 255, i % 256, 10]))]
        records.append((key, value, headers))
    return records


def produce(config, topic, records, partition_of=None, timeout_s=60):
    """Produce records, wait for every delivery report. Returns (acks, errors): acks maps
    record index -> (partition, offset); errors lists texts (delivery and client errors)."""
    acks, errors = {}, []

    def on_error(err):
        errors.append(f"client error: {err}")

    producer = Producer({**config, "error_cb": on_error})

    def report(index):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                acks[index] = (msg.partition(), msg.offset())

        return on_delivery

    for i, (key, value, headers) in enumerate(records):
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": report(i)}
        if partition_of is not None:
            kwargs["partition"] = partition_of(i)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    deadline = time.monotonic() + timeout_s
    while len(acks) + len(errors) < len(records) and time.monotonic() < deadline:
        producer.poll(0.2)
        if any(e.startswith("client error") and "FATAL" in e for e in errors):
            break
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    if left:
        errors.append(f"{left} records still undelivered after {timeout_s}s")
    return acks, errors


def read_back(bootstrap, topic, partitions, until, timeout_s=60):
    """Read partitions from the beginning by assign() (no group membership) until each
    partition p has reached offset until[p] (exclusive). Returns ({(p, offset): record},
    problems)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # confluent-kafka insists on a group.id; it is never joined (assign only, no commits).
            "group.id": f"lmq-compat-readback-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got, problems, last = {}, [], {}
    remaining = {p for p in partitions if until.get(p, 0) > 0}
    deadline = time.monotonic() + timeout_s
    try:
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                problems.append(f"consumer error: {msg.error()}")
                if msg.error().fatal():
                    break
                continue
            p, off = msg.partition(), msg.offset()
            if off <= last.get(p, -1):
                problems.append(f"partition {p}: offset {off} after {last[p]} (out of order)")
            last[p] = off
            got[(p, off)] = (msg.key(), msg.value(), list(msg.headers() or []))
            if off + 1 >= until.get(p, 0):
                remaining.discard(p)
    finally:
        consumer.close()
    if remaining:
        where = ", ".join(f"p{p} at {last.get(p, -1) + 1}/{until[p]}" for p in sorted(remaining))
        problems.append(f"read-back incomplete after {timeout_s}s: {where}")
    return got, problems


def watermarks(bootstrap, topic, partitions, timeout_s=10):
    """{partition: (log start offset, high watermark)} as ListOffsets reports them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lmq-compat-wm-{time.time_ns()}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in partitions
        }
    finally:
        consumer.close()


def compare(records, acks, got, allowed_missing=lambda p, off: False):
    """Every acknowledged record must be read back at its acknowledged offset with identical
    key, value and headers. Returns a list of problems (empty when all is well)."""
    problems = []
    for i, (key, value, headers) in enumerate(records):
        if i not in acks:
            continue
        p, off = acks[i]
        found = got.get((p, off))
        if found is None:
            if not allowed_missing(p, off):
                problems.append(f"record {i} acknowledged at p{p}@{off} is missing")
            continue
        if found != (key, value, headers):
            problems.append(f"record {i} at p{p}@{off} differs: read key={found[0][:40]!r}")
    acked = set(acks.values())
    extra = sorted(k for k in got if k not in acked)
    if extra:
        problems.append(f"{len(extra)} records read that were never acknowledged, e.g. {extra[:3]}")
    return problems


def summarize(problems, limit=3):
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
