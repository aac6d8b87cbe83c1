#!/usr/bin/env python3
"""The kafka-python family's scenarios (see ../CONTRACT.md): PyPI kafka-python (pure Python,
with python-snappy/cramjam, lz4 and zstandard for the codecs), through its own KafkaProducer,
KafkaConsumer and KafkaAdminClient.

usage: scenarios.py BOOTSTRAP [SCENARIO...] | --list
Prints exactly one 'PASS s' / 'FAIL s: reason' / 'N/A s: reason' line per scenario on
stdout; kafka-python's logging (WARNING and up, everything with COMPAT_DEBUG=1) and
diagnostics go to stderr. Each scenario runs in a process of its own (../pycommon.py).
"""

import contextlib
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kafka.errors as Errors  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

from pycommon import (  # noqa: E402
    SETTLE_S,
    Failure,
    Got,
    Sent,
    binary_records,
    check_offsets,
    check_round_trip,
    check_values_only,
    main,
    numbered,
)

FAMILY = "kafka-python"
# Delivery gives up well inside the scenario budget instead of the 120 s default.
DELIVERY_TIMEOUT_MS = 30000
# poll()'s timeout. Not shorter: kafka-python 3.0.12 can drop a group join that is still in
# flight when poll() times out (seen with 100 ms: the SyncGroup answer arrives, heartbeats
# are never re-enabled, and the coordinator expels the member after session.timeout.ms).
# poll() returns as soon as records are there, so this costs nothing while they flow.
POLL_MS = 1000


# ---------------------------------------------------------------------------- clients


def common_config(ctx):
    return {"bootstrap_servers": ctx.bootstrap, "client_id": f"compat-{FAMILY}"}


@contextlib.contextmanager
def admin_client(ctx):
    admin = KafkaAdminClient(**common_config(ctx), request_timeout_ms=30000)
    try:
        yield admin
    finally:
        admin.close()


@contextlib.contextmanager
def consumer_client(ctx, **config):
    """A consumer, closed on the way out without committing anything. With no group_id it
    is assign-only and never talks to a group coordinator."""
    settings = {"enable_auto_commit": False, "auto_offset_reset": "earliest", **config}
    consumer = KafkaConsumer(**common_config(ctx), **settings)
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False, timeout_ms=5000)


def new_producer(ctx, **config):
    # kafka-python turns idempotence on by default (KIP-679); every scenario but
    # `idempotent` tests the plain producer, as the other families do.
    # delivery_timeout_ms must exceed linger_ms + request_timeout_ms.
    settings = {"enable_idempotence": False, "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
                "request_timeout_ms": DELIVERY_TIMEOUT_MS // 2, **config}
    return KafkaProducer(**common_config(ctx), **settings)


# ---------------------------------------------------------------------------- topics


def create_topic(ctx, admin, partitions=3, configs=None, tag="topic"):
    """Creates a fresh topic with the admin API and waits until every partition has a
    leader in the metadata; returns its name."""
    topic = ctx.name(tag)
    spec = {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}
    try:
        admin.create_topics({topic: spec}, timeout_ms=20000)
    except Errors.KafkaError as error:
        raise Failure(f"create_topics({topic}) failed: {type(error).__name__}: {error}") from None
    wait_for_leaders(ctx, admin, topic, partitions)
    wait_for_logs(ctx, topic, partitions)
    return topic


def describe_topic(admin, topic):
    """The metadata dict of one topic (name, error_code, partitions), or None."""
    listed = [t for t in admin.describe_topics([topic]) if t["name"] == topic]
    return listed[0] if listed else None


def leaders(described):
    return {p["partition_index"]: p["leader_id"] for p in described["partitions"]}


def wait_for_leaders(ctx, admin, topic, partitions):
    def ready():
        described = describe_topic(admin, topic)
        if described is None or described["error_code"] != 0:
            return None
        found = leaders(described)
        return len(found) == partitions and all(leader >= 0 for leader in found.values())

    if not ctx.wait_until(15, ready):
        described = describe_topic(admin, topic)
        got = "absent" if described is None else (
            f"error {Errors.for_code(described['error_code']).__name__}" if described["error_code"]
            else leaders(described))
        raise Failure(f"topic {topic}: expected {partitions} partitions with leaders, metadata says {got}")


def wait_for_logs(ctx, topic, partitions):
    """Until every partition answers a ListOffsets (end_offsets retries until its leader
    serves it). A broker can list a new partition's leader a moment before that leader
    serves it; records sent with acks=0 in that moment are lost without a word (there is no
    answer to retry on), so every scenario writes only once its partitions are served."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    with consumer_client(ctx) as consumer:
        try:
            consumer.end_offsets(tps, timeout_ms=ctx.timeout(15) * 1000)
        except Errors.KafkaError as error:
            raise Failure(f"new topic {topic} is not served after 15 s: {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------------------- produce


def produce(ctx, topic, records, partition=None, **config):
    """Produces every record with a new producer, waits for every acknowledgement and fills
    in each record's partition and offset (-1 with acks=0). A failed send raises Failure
    with the client's exception."""
    producer = new_producer(ctx, **config)
    try:
        futures = [producer.send(topic, value=r.value, key=r.key, headers=r.headers or None,
                                 partition=partition, timestamp_ms=r.timestamp) for r in records]
        producer.flush(timeout=ctx.timeout(DELIVERY_TIMEOUT_MS / 1000 + 5))
        for i, (record, future) in enumerate(zip(records, futures)):
            try:
                metadata = future.get(timeout=ctx.timeout(5))
            except Errors.KafkaError as error:
                raise Failure(f"record {i} of {len(records)} failed: {type(error).__name__}: {error}") from None
            record.partition, record.offset = metadata.partition, metadata.offset
    finally:
        producer.close(timeout=5)


# ---------------------------------------------------------------------------- consume


def to_got(record):
    return Got(record.partition, record.offset, record.key, record.value, record.headers, record.timestamp)


def poll_records(ctx, consumer, want, seconds=30):
    """Polls until `want` records arrived, then SETTLE_S more to catch extras (duplicates,
    records that should not be there). The client's exceptions propagate."""
    got = []
    end = time.monotonic() + ctx.timeout(seconds)
    settle_end = None
    while time.monotonic() < (settle_end or end):
        for batch in consumer.poll(timeout_ms=POLL_MS).values():
            got += [to_got(r) for r in batch]
        if settle_end is None and len(got) >= want:
            settle_end = time.monotonic() + SETTLE_S
    return got


def read_partitions(ctx, topic, partitions, want, offset=None, **config):
    """A fresh consumer assigned to the given partitions, from the beginning (offset None) or
    from `offset`; what it reads."""
    with consumer_client(ctx, **config) as consumer:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        return poll_records(ctx, consumer, want)


# ---------------------------------------------------------------------------- scenarios


def scenario_metadata(ctx):
    with admin_client(ctx) as admin:
        brokers = admin.describe_cluster()["brokers"]
        if not brokers or not all(b.get("host") and b.get("port", 0) > 0 for b in brokers):
            raise Failure(f"describe_cluster lists no broker with host and port: {brokers}")
        create_topic(ctx, admin, 3)  # waits until the metadata shows 3 partitions with leaders


def produce_acks(acks):
    def scenario(ctx):
        with admin_client(ctx) as admin:
            topic = create_topic(ctx, admin, 3)
        records = numbered(200)
        produce(ctx, topic, records, acks=acks)
        got = read_partitions(ctx, topic, range(3), len(records))
        if acks == 0:  # no acknowledgement, so no offset to compare against
            check_values_only(records, got)
        else:
            check_round_trip(records, got)
    return scenario


def compression(codec):
    def scenario(ctx):
        with admin_client(ctx) as admin:
            topic = create_topic(ctx, admin, 3)
        records = numbered(200, headers=True, value_pad=20)
        produce(ctx, topic, records, acks="all", compression_type=codec, linger_ms=20)
        check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))
    return scenario


def scenario_keys_headers_nulls(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    records = binary_records(60)
    produce(ctx, topic, records, acks="all")
    check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))


def scenario_large_message(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    records = [Sent(b"large", random.randbytes(900_000))]
    produce(ctx, topic, records, acks="all", max_request_size=2_000_000)
    check_round_trip(records, read_partitions(ctx, topic, range(3), 1))


def single_partition_topic_with(ctx, count):
    """A fresh 3-partition topic with `count` numbered records on partition 0."""
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    records = numbered(count)
    produce(ctx, topic, records, partition=0, acks="all")
    return topic, records


def scenario_consume_beginning(ctx):
    topic, records = single_partition_topic_with(ctx, 50)
    check_offsets(read_partitions(ctx, topic, [0], 50), 0, 0, records)


def scenario_consume_offset(ctx):
    topic, records = single_partition_topic_with(ctx, 100)
    check_offsets(read_partitions(ctx, topic, [0], 60, offset=40), 0, 40, records)


def scenario_consume_timestamp(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    # In the past, inside the broker's accepted window (Kafka 4 rejects timestamps more
    # than an hour ahead) and far inside the default 7-day retention.
    t0 = int(time.time() * 1000) - 3 * 3600 * 1000
    t1 = t0 + 3600 * 1000
    records = numbered(100)
    for i, record in enumerate(records):
        record.timestamp = (t0 + i) if i < 50 else (t1 + i - 50)
    produce(ctx, topic, records[:50], partition=0, acks="all")
    produce(ctx, topic, records[50:], partition=0, acks="all")
    tp = TopicPartition(topic, 0)
    with consumer_client(ctx) as consumer:
        found = consumer.offsets_for_times({tp: t1}, timeout_ms=ctx.timeout(15) * 1000).get(tp)
        if found is None or found.offset != 50:
            raise Failure(f"offsets_for_times({t1}) = {found}, expected offset 50")
        consumer.assign([tp])
        consumer.seek(tp, found.offset)
        check_offsets(poll_records(ctx, consumer, 50), 0, 50, records)


def scenario_consume_end(ctx):
    topic, records = single_partition_topic_with(ctx, 20)
    more = numbered(30)
    tp = TopicPartition(topic, 0)
    with consumer_client(ctx) as consumer:
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        # position() blocks until the latest offset is resolved: the consumer is positioned.
        position = consumer.position(tp, timeout_ms=ctx.timeout(15) * 1000)
        if position != 20:
            raise Failure(f"positioned at the end at offset {position}, expected 20")
        produce(ctx, topic, more[20:], partition=0, acks="all")
        check_offsets(poll_records(ctx, consumer, 10), 0, 20, more)


def scenario_idempotent(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    records = numbered(300)
    produce(ctx, topic, records, enable_idempotence=True, acks="all")
    check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))


# ------------------------------------------------------------ group-rebalance, commit-resume


def group_consumer(ctx, group):
    # Manual commits: the scenario decides what is committed and when.
    return consumer_client(ctx, group_id=group, enable_auto_commit=False,
                           session_timeout_ms=10000, heartbeat_interval_ms=1000)


def assigned(consumer):
    return {tp.partition for tp in consumer.assignment()}


def poll_members(ctx, members, seconds, want=None):
    """Polls every member in turn (a member that is not polled cannot take part in a
    rebalance) and returns {id(member): [Got]}: when `want` is a number, once that many
    records arrived in total plus SETTLE_S for extras; when it is a condition, once it has
    held for 1 s (Failure when it does not within `seconds`)."""
    got = {id(m): [] for m in members}
    end = time.monotonic() + ctx.timeout(seconds)
    done_at = None
    while time.monotonic() < (done_at or end):
        for member in members:
            for batch in member.poll(timeout_ms=POLL_MS).values():
                got[id(member)] += [to_got(r) for r in batch]
        if callable(want):
            done_at = (done_at or time.monotonic() + 1.0) if want() else None
        elif want is not None and done_at is None and sum(map(len, got.values())) >= want:
            done_at = time.monotonic() + SETTLE_S
    if callable(want) and not want():
        raise Failure(f"assignments did not settle within {seconds} s: "
                      f"{[sorted(assigned(m)) for m in members]}")
    return got


def scenario_group_rebalance(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 4)
    group = ctx.name("group")
    records = numbered(300)
    with group_consumer(ctx, group) as a, group_consumer(ctx, group) as b:
        a.subscribe([topic])
        b.subscribe([topic])

        def split():
            pa, pb = assigned(a), assigned(b)
            return pa and pb and not pa & pb and pa | pb == {0, 1, 2, 3}

        poll_members(ctx, [a, b], 40, split)
        owner = {p: "a" for p in assigned(a)} | {p: "b" for p in assigned(b)}
        ctx.log(f"assignment: a={sorted(assigned(a))} b={sorted(assigned(b))}")

        produce(ctx, topic, records[:200], acks="all")
        got = poll_members(ctx, [a, b], 30, 200)
        for name, member in (("a", a), ("b", b)):
            wrong = [g for g in got[id(member)] if owner[g.partition] != name]
            if wrong:
                raise Failure(f"consumer {name} read records of partitions it does not own: {wrong[:5]}")
        # Each partition was read by one member only, so per-partition order survives.
        check_round_trip(records[:200], got[id(a)] + got[id(b)])
        if {p: "a" for p in assigned(a)} | {p: "b" for p in assigned(b)} != owner:
            raise Failure(f"assignment changed while consuming: a={sorted(assigned(a))} b={sorted(assigned(b))}")

        # Both commit what they read, so the partitions b hands over resume where b left.
        a.commit()
        b.commit()
        b.close(autocommit=False)
        poll_members(ctx, [a], 40, lambda: assigned(a) == {0, 1, 2, 3})
        produce(ctx, topic, records[200:], acks="all")
        check_round_trip(records[200:], poll_members(ctx, [a], 30, 100)[id(a)])


def scenario_commit_resume(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 1)
    group = ctx.name("group")
    records = numbered(150)
    produce(ctx, topic, records, acks="all")
    tp = TopicPartition(topic, 0)
    with group_consumer(ctx, group) as first:
        first.subscribe([topic])
        processed = []
        end = time.monotonic() + ctx.timeout(30)
        while len(processed) < 100 and time.monotonic() < end:
            # max_records: hand the application no more than the 100 it processes.
            polled = first.poll(timeout_ms=POLL_MS, max_records=100 - len(processed))
            processed += [to_got(r) for batch in polled.values() for r in batch]
        check_offsets(processed, 0, 0, records[:100])
        first.commit({tp: OffsetAndMetadata(100, "", -1)})
    with group_consumer(ctx, group) as second:
        second.subscribe([topic])
        check_offsets(poll_records(ctx, second, 50), 0, 100, records)


# ---------------------------------------------------------------------------- admin


def scenario_admin_topics(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
        if topic not in admin.list_topics():
            raise Failure(f"created topic {topic} is not listed")
        admin.create_partitions({topic: 5})

        def partitions():
            return len(describe_topic(admin, topic)["partitions"])

        # The new partitions reach the metadata a moment after the request completes.
        if not ctx.wait_until(10, lambda: partitions() == 5):
            raise Failure(f"describe shows {partitions()} partitions after growing to 5")
        admin.delete_topics([topic], timeout_ms=20000)
        if not ctx.wait_until(10, lambda: topic not in admin.list_topics()):
            raise Failure(f"deleted topic {topic} is still listed after 10 s")


def retention(admin, topic):
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")
    entry = described.get("topic", {}).get(topic, {}).get("retention.ms")
    return entry["value"] if entry else None


def scenario_admin_configs(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3, configs={"retention.ms": "3600000"})
        if not ctx.wait_until(10, lambda: retention(admin, topic) == "3600000"):
            raise Failure(f"describe_configs shows retention.ms={retention(admin, topic)}, created with 3600000")
        change = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})
        outcome = admin.alter_configs([change], incremental=True)  # IncrementalAlterConfigs
        if outcome.get("topic", {}).get(topic) != "OK":
            raise Failure(f"incremental alter_configs failed: {outcome}")
        if not ctx.wait_until(10, lambda: retention(admin, topic) == "7200000"):
            raise Failure(f"describe_configs shows retention.ms={retention(admin, topic)} after "
                          "incremental alter_configs set it to 7200000")


def scenario_delete_records(ctx):
    topic, records = single_partition_topic_with(ctx, 100)
    tp = TopicPartition(topic, 0)
    with admin_client(ctx) as admin:
        deleted = admin.delete_records({tp: 30}, timeout_ms=20000)[tp]
    if deleted["low_watermark"] != 30:
        raise Failure(f"delete_records reports low watermark {deleted['low_watermark']}, expected 30")
    with consumer_client(ctx) as consumer:
        earliest = consumer.beginning_offsets([tp], timeout_ms=ctx.timeout(15) * 1000)[tp]
    if earliest != 30:
        raise Failure(f"beginning_offsets after delete_records is {earliest}, expected 30")
    check_offsets(read_partitions(ctx, topic, [0], 70), 0, 30, records)


# ---------------------------------------------------------------------------- errors


def scenario_error_unknown_topic(ctx):
    topic = ctx.name("missing")
    with admin_client(ctx) as admin:
        described = describe_topic(admin, topic)  # a Metadata request without auto-creation
    if described is None:
        raise Failure(f"describe_topics({topic}) returned no entry for it")
    error = Errors.for_code(described["error_code"])
    if error is not Errors.UnknownTopicOrPartitionError:
        raise Failure(f"describe_topics({topic}): expected UnknownTopicOrPartitionError, got {error.__name__}")
    ctx.log(f"describe_topics({topic}): {error.__name__}")


def scenario_error_invalid_topic(ctx):
    with admin_client(ctx) as admin:
        try:
            outcome = admin.create_topics({"bad/name": {"num_partitions": 3, "replication_factor": 1}})
        except Errors.InvalidTopicError as error:
            ctx.log(f"create_topics(bad/name): {type(error).__name__}: {error}")
            return
        except Errors.KafkaError as error:
            raise Failure(f"create_topics(bad/name): expected InvalidTopicError, got {type(error).__name__}: {error}")
    raise Failure(f"create_topics(bad/name) succeeded: {outcome}")


def scenario_error_too_large(ctx):
    with admin_client(ctx) as admin:
        topic = create_topic(ctx, admin, 3)
    try:
        produce(ctx, topic, [Sent(b"big", random.randbytes(2_000_000))],
                acks="all", max_request_size=4 * 1024 * 1024)
    except Failure as failure:
        if "MessageSizeTooLargeError" not in str(failure):
            raise Failure(f"expected MessageSizeTooLargeError, {failure}") from None
        ctx.log(str(failure))
    else:
        raise Failure("a 2,000,000-byte record to a topic with max.message.bytes 1 MiB was accepted")
    with consumer_client(ctx) as consumer:
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = consumer.end_offsets(tps, timeout_ms=ctx.timeout(15) * 1000)
    if any(ends[tp] != 0 for tp in tps):
        raise Failure(f"the topic is not empty: end offsets {[ends[tp] for tp in tps]}")


def scenario_error_out_of_range(ctx):
    topic, _ = single_partition_topic_with(ctx, 10)
    try:
        got = read_partitions(ctx, topic, [0], 1, offset=1000, auto_offset_reset="none")
    except Errors.OffsetOutOfRangeError as error:
        ctx.log(f"poll: {type(error).__name__}: {error}")
        return
    raise Failure(f"no OffsetOutOfRangeError from offset 1000 with auto_offset_reset=none; read {got[:5]}")


# ---------------------------------------------------------------------------- protocol


def raw_call(sock, correlation_id, api_key, version, body):
    """Sends one request (header v1) and returns its response body after the v0 header."""
    client_id = f"compat-{FAMILY}".encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    answer = read_exactly(sock, size)
    received = struct.unpack(">i", answer[:4])[0]
    if received != correlation_id:
        raise Failure(f"answer for correlation id {received}, expected {correlation_id}")
    return answer[4:]


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise Failure(f"the broker closed the connection ({len(data)} of {size} bytes read)")
        data += chunk
    return data


def scenario_sasl_plaintext(ctx):
    """What a client configured for SASL gets from a PLAINTEXT listener: kafka-python's SASL
    path (SaslHandshake v1, then SaslAuthenticate) as raw frames, so every field is checked:
    ILLEGAL_SASL_STATE (34) and no mechanism offered, and the connection stays usable
    (Metadata is answered on it)."""
    host, _, port = ctx.bootstrap.split(",")[0].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=ctx.timeout(20)) as sock:
        mechanism = b"SCRAM-SHA-256"
        body = raw_call(sock, 1, 17, 1, struct.pack(">h", len(mechanism)) + mechanism)
        error_code, count = struct.unpack(">hi", body[:6])
        mechanisms, at = [], 6
        for _ in range(max(count, 0)):
            (length,) = struct.unpack(">h", body[at:at + 2])
            mechanisms.append(body[at + 2:at + 2 + length].decode())
            at += 2 + length
        if (error_code, mechanisms) != (34, []):
            raise Failure(f"SaslHandshake(SCRAM-SHA-256): error {error_code}, mechanisms "
                          f"{mechanisms}; expected 34 (ILLEGAL_SASL_STATE) and none")
        token = b"\0user\0password"
        body = raw_call(sock, 2, 36, 1, struct.pack(">i", len(token)) + token)
        (error_code,) = struct.unpack(">h", body[:2])
        if error_code != 34:
            raise Failure(f"SaslAuthenticate without a handshake: error {error_code}, "
                          "expected 34 (ILLEGAL_SASL_STATE)")
        # The connection still serves: Metadata v1 for no topic lists the broker.
        body = raw_call(sock, 3, 3, 1, struct.pack(">i", 0))
        (brokers,) = struct.unpack(">i", body[:4])
        if brokers < 1:
            raise Failure(f"Metadata after the SASL refusals lists {brokers} brokers")
    ctx.log("SaslHandshake and SaslAuthenticate: ILLEGAL_SASL_STATE, no mechanism; connection usable")



# ---------------------------------------------------------------------------- transactions


def txn_producer(ctx, transactional_id):
    return new_producer(ctx, transactional_id=transactional_id, enable_idempotence=True, acks="all",
                        transaction_timeout_ms=30000)


def txn_send(ctx, producer, topic, values):
    futures = [producer.send(topic, key=v, value=v, partition=0) for v in values]
    producer.flush(timeout=ctx.timeout(30))
    for value, future in zip(values, futures):
        try:
            future.get(timeout=ctx.timeout(5))
        except Errors.KafkaError as error:
            raise Failure(f"transactional send of {value!r} failed: {type(error).__name__}: {error}") from None


def txn_step(what, call, *args):
    try:
        return call(*args)
    except Errors.KafkaError as error:
        raise Failure(f"{what} failed: {type(error).__name__}: {error}") from None


def is_fenced(error):
    """ProducerFencedError or InvalidProducerEpochError, also when kafka-python wraps it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (Errors.ProducerFencedError, Errors.InvalidProducerEpochError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def scenario_transactions(ctx):
    with admin_client(ctx) as admin:
        output = create_topic(ctx, admin, 1, tag="out")
        source = create_topic(ctx, admin, 1, tag="in")
    group = ctx.name("group")
    inputs = [f"in-{i}".encode() for i in range(3)]
    produce(ctx, source, [Sent(v, v) for v in inputs], partition=0, acks="all")
    t1 = [f"t1-{i}".encode() for i in range(10)]
    t2 = [f"t2-{i}".encode() for i in range(5)]
    t3 = [f"t3-{i}".encode() for i in range(3)]
    transactional_id = ctx.name()

    first = txn_producer(ctx, transactional_id)
    try:
        txn_step("init_transactions", first.init_transactions)
        txn_step("begin_transaction 1", first.begin_transaction)
        txn_send(ctx, first, output, t1)
        txn_step("commit_transaction 1", first.commit_transaction)
        txn_step("begin_transaction 2", first.begin_transaction)
        txn_send(ctx, first, output, t2)
        txn_step("abort_transaction 2", first.abort_transaction)

        # Transaction 3: a group member reads the input; its offsets go with the transaction.
        tp = TopicPartition(source, 0)
        with group_consumer(ctx, group) as member:
            member.subscribe([source])
            read = []
            end = time.monotonic() + ctx.timeout(30)
            while len(read) < len(inputs) and time.monotonic() < end:
                for batch in member.poll(timeout_ms=POLL_MS).values():
                    read += [r.value for r in batch]
            if read != inputs:
                raise Failure(f"the group member read {read} from the input topic, expected {inputs}")
            txn_step("begin_transaction 3", first.begin_transaction)
            txn_send(ctx, first, output, t3)
            txn_step("send_offsets_to_transaction", first.send_offsets_to_transaction,
                     {tp: OffsetAndMetadata(len(inputs), "", -1)}, member.group_metadata())
            txn_step("commit_transaction 3", first.commit_transaction)
            # The offsets count once the commit marker reached the group's partition, which
            # EndTxn does not wait for: OffsetFetch is retried for a while.
            ctx.wait_until(10, lambda: member.committed(tp) == len(inputs))
            committed = member.committed(tp)
            if committed != len(inputs):
                raise Failure(f"group {group} committed offset of the input is {committed}, expected 3")

        # A second producer with the same transactional.id fences the first.
        second = txn_producer(ctx, transactional_id)
        try:
            txn_step("init_transactions (second producer)", second.init_transactions)
        finally:
            second.close(timeout=5)
        error = None
        try:
            first.begin_transaction()
            first.send(output, key=b"fenced", value=b"fenced", partition=0).get(timeout=ctx.timeout(30))
            first.commit_transaction()
        except Exception as exc:  # the fenced error, whatever kafka-python wraps it in
            error = exc
        if error is None:
            raise Failure("the fenced producer committed a transaction after a second producer "
                          "with its transactional.id initialised")
        if not is_fenced(error):
            raise Failure(f"the fenced producer failed with {type(error).__name__}: {error}, "
                          "expected ProducerFencedError or InvalidProducerEpochError")
        ctx.log(f"first producer fenced: {type(error).__name__}: {error}")
    finally:
        first.close(timeout=5)

    committed_view = [g.value for g in read_partitions(
        ctx, output, [0], len(t1) + len(t3), isolation_level="read_committed")]
    if committed_view != t1 + t3:
        raise Failure(f"read_committed read {len(committed_view)} records {committed_view[:20]}, "
                      "expected t1-0..t1-9, t3-0..t3-2")
    everything = [g.value for g in read_partitions(
        ctx, output, [0], len(t1) + len(t2) + len(t3), isolation_level="read_uncommitted")]
    if everything != t1 + t2 + t3:
        raise Failure(f"read_uncommitted read {len(everything)} records {everything[:20]}, "
                      "expected t1-0..t1-9, t2-0..t2-4, t3-0..t3-2")


SCENARIOS = {
    "metadata": scenario_metadata,
    "produce-acks-0": produce_acks(0),
    "produce-acks-1": produce_acks(1),
    "produce-acks-all": produce_acks("all"),
    "compression-gzip": compression("gzip"),
    "compression-snappy": compression("snappy"),
    "compression-lz4": compression("lz4"),
    "compression-zstd": compression("zstd"),
    "keys-headers-nulls": scenario_keys_headers_nulls,
    "large-message": scenario_large_message,
    "consume-beginning": scenario_consume_beginning,
    "consume-offset": scenario_consume_offset,
    "consume-timestamp": scenario_consume_timestamp,
    "consume-end": scenario_consume_end,
    "idempotent": scenario_idempotent,
    "group-rebalance": scenario_group_rebalance,
    "commit-resume": scenario_commit_resume,
    "admin-topics": scenario_admin_topics,
    "admin-configs": scenario_admin_configs,
    "delete-records": scenario_delete_records,
    "error-unknown-topic": scenario_error_unknown_topic,
    "error-invalid-topic": scenario_error_invalid_topic,
    "error-too-large": scenario_error_too_large,
    "error-out-of-range": scenario_error_out_of_range,
    "transactions": scenario_transactions,
    "sasl-plaintext": scenario_sasl_plaintext,
}

if __name__ == "__main__":
    sys.exit(main(FAMILY, SCENARIOS))
