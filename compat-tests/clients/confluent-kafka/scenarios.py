#!/usr/bin/env python3
"""The confluent-kafka family's scenarios (see ../CONTRACT.md): PyPI confluent-kafka, on the
librdkafka its wheel bundles, through its own Producer, Consumer and AdminClient.

usage: scenarios.py BOOTSTRAP [SCENARIO...] | --list
Prints exactly one 'PASS s' / 'FAIL s: reason' / 'N/A s: reason' line per scenario on
stdout; librdkafka's logs and diagnostics go to stderr (COMPAT_DEBUG=1 for librdkafka's
debug contexts). Each scenario runs in a process of its own (../pycommon.py).
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

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

FAMILY = "confluent-kafka"
# Delivery gives up well inside the scenario budget instead of librdkafka's 300 s default.
DELIVERY_TIMEOUT_MS = 30000


# ---------------------------------------------------------------------------- clients


def common_config(ctx, extra=None):
    config = {
        "bootstrap.servers": ctx.bootstrap,
        "client.id": f"compat-{FAMILY}",
        # Client-level errors (connection refused, all brokers down) only get logged: the
        # operation that suffers from them fails with its own error.
        "error_cb": lambda err: ctx.log(f"client error: {err}"),
    }
    if os.environ.get("COMPAT_DEBUG"):
        config["debug"] = "broker,topic,msg,protocol,cgrp,fetch"
    config.update(extra or {})
    return config


def new_admin(ctx):
    return AdminClient(common_config(ctx))


def new_producer(ctx, extra=None):
    return Producer(common_config(ctx, {"message.timeout.ms": DELIVERY_TIMEOUT_MS, **(extra or {})}))


def new_consumer(ctx, extra=None):
    """A consumer; assign-only scenarios still need a group.id for librdkafka, one that is
    never joined nor committed to."""
    config = {"group.id": ctx.name("group"), "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    return Consumer(common_config(ctx, {**config, **(extra or {})}))


class Closing:
    """with Closing(consumer): ... closes the consumer however the block ends."""

    def __init__(self, consumer):
        self.consumer = consumer

    def __enter__(self):
        return self.consumer

    def __exit__(self, *exc):
        try:
            self.consumer.close()
        except Exception as error:  # already closed, or the broker is gone: nothing to do
            print(f"[{FAMILY}] consumer close: {error}", file=sys.stderr)


def kafka_error(exc):
    """The KafkaError inside a KafkaException (or None)."""
    return exc.args[0] if isinstance(exc, KafkaException) and exc.args else None


def result(ctx, future, what, seconds=30):
    """A future's result within the budget; a client/broker error becomes a Failure."""
    try:
        return future.result(timeout=ctx.timeout(seconds))
    except KafkaException as exc:
        raise Failure(f"{what} failed: {kafka_error(exc)}") from None
    except TimeoutError:
        raise Failure(f"{what} did not complete within {seconds} s") from None


# ---------------------------------------------------------------------------- topics


def create_topic(ctx, admin, partitions=3, config=None, tag="topic"):
    """Creates a fresh topic with the admin API and waits until every partition has a
    leader in the metadata and that leader serves it; returns its name."""
    topic = ctx.name(tag)
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    result(ctx, admin.create_topics([new], operation_timeout=20)[topic], f"create_topics({topic})")
    wait_for_leaders(ctx, admin, topic, partitions)
    wait_for_logs(ctx, topic, partitions)
    return topic


def wait_for_leaders(ctx, admin, topic, partitions):
    def ready():
        listed = admin.list_topics(topic=topic, timeout=ctx.timeout(10)).topics.get(topic)
        if listed is None or listed.error is not None or len(listed.partitions) != partitions:
            return None
        return all(p.leader >= 0 for p in listed.partitions.values())

    if not ctx.wait_until(15, ready):
        listed = admin.list_topics(topic=topic, timeout=ctx.timeout(10)).topics.get(topic)
        got = "absent" if listed is None else (
            f"error {listed.error}" if listed.error else
            {p: m.leader for p, m in listed.partitions.items()})
        raise Failure(f"topic {topic}: expected {partitions} partitions with leaders, metadata says {got}")


def wait_for_logs(ctx, topic, partitions):
    """Until every partition answers a ListOffsets (watermarks). A broker can list a new
    partition's leader a moment before that leader serves it; records sent with acks=0 in
    that moment are lost without a word (there is no answer to retry on), so every scenario
    writes only once its partitions are served."""
    with Closing(new_consumer(ctx)) as consumer:
        for partition in range(partitions):
            last = []

            def served():
                try:
                    return consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                          timeout=ctx.timeout(5)) is not None
                except KafkaException as exc:
                    last[:] = [kafka_error(exc)]
                    return False

            if not ctx.wait_until(15, served):
                raise Failure(f"partition {partition} of new topic {topic} is not served after 15 s: {last}")


def watermarks(ctx, topic, partition):
    with Closing(new_consumer(ctx)) as consumer:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=ctx.timeout(10))


# ---------------------------------------------------------------------------- produce


def produce(ctx, topic, records, config=None, partition=None):
    """Produces every record with a new producer, waits for all delivery reports and fills
    in each record's acknowledged partition and offset. A failed delivery raises Failure."""
    producer = new_producer(ctx, config)
    errors = []

    def on_delivery(record):
        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                record.partition, record.offset = msg.partition(), msg.offset()
        return report

    for record in records:
        kwargs = {"key": record.key, "value": record.value, "headers": record.headers or None,
                  "on_delivery": on_delivery(record)}
        if partition is not None:
            kwargs["partition"] = partition
        if record.timestamp is not None:
            kwargs["timestamp"] = record.timestamp
        produce_one(ctx, producer, topic, kwargs)
    left = producer.flush(ctx.timeout(DELIVERY_TIMEOUT_MS / 1000 + 5))
    if errors:
        raise Failure(f"{len(errors)} of {len(records)} deliveries failed, first: {errors[0]}")
    if left:
        raise Failure(f"{left} of {len(records)} records still undelivered after flush")


def produce_one(ctx, producer, topic, kwargs):
    """producer.produce, waiting (serving delivery reports) while the local queue is full."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            ctx.remaining()
            producer.poll(0.1)


# ---------------------------------------------------------------------------- consume


class ConsumerError(Failure):
    """The consumer delivered an error; .error is the KafkaError."""

    def __init__(self, error):
        super().__init__(f"consumer error: {error}")
        self.error = error


def to_got(msg):
    return Got(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), msg.timestamp()[1])


def poll_records(ctx, consumer, want, seconds=30, eof=None):
    """Polls until `want` records arrived, then SETTLE_S more to catch extras (duplicates,
    records that should not be there). Partition-EOF events are recorded in eof (a dict
    partition -> offset) when given; any other error raises ConsumerError."""
    got = []
    end = time.monotonic() + ctx.timeout(seconds)
    settle_end = None
    while time.monotonic() < (settle_end or end):
        msg = consumer.poll(0.2)
        if msg is None:
            pass
        elif msg.error() is None:
            got.append(to_got(msg))
        elif msg.error().code() == KafkaError._PARTITION_EOF:
            if eof is not None:
                eof[msg.partition()] = msg.offset()
        else:
            raise ConsumerError(msg.error())
        if settle_end is None and len(got) >= want:
            settle_end = time.monotonic() + SETTLE_S
    return got


def read_partitions(ctx, topic, partitions, want, offset=OFFSET_BEGINNING, extra=None):
    """A fresh consumer assigned to the given partitions at `offset`; what it reads."""
    with Closing(new_consumer(ctx, extra)) as consumer:
        consumer.assign([TopicPartition(topic, p, offset) for p in partitions])
        return poll_records(ctx, consumer, want)


# ---------------------------------------------------------------------------- scenarios


def scenario_metadata(ctx):
    admin = new_admin(ctx)
    cluster = admin.list_topics(timeout=ctx.timeout(10))
    brokers = list(cluster.brokers.values())
    if not brokers or not all(b.host and b.port > 0 for b in brokers):
        raise Failure(f"metadata lists no broker with host and port: {brokers}")
    create_topic(ctx, admin, 3)  # waits until the metadata shows 3 partitions with leaders


def produce_acks(acks):
    def scenario(ctx):
        topic = create_topic(ctx, new_admin(ctx), 3)
        records = numbered(200)
        produce(ctx, topic, records, {"acks": acks})
        got = read_partitions(ctx, topic, range(3), len(records))
        if acks == 0:  # no acknowledgement, so no partition/offset to compare against
            check_values_only(records, got)
        else:
            check_round_trip(records, got)
    return scenario


def compression(codec):
    def scenario(ctx):
        topic = create_topic(ctx, new_admin(ctx), 3)
        records = numbered(200, headers=True, value_pad=20)
        produce(ctx, topic, records, {"acks": "all", "compression.type": codec, "linger.ms": 20})
        check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))
    return scenario


def scenario_keys_headers_nulls(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = binary_records(60)
    produce(ctx, topic, records, {"acks": "all"})
    check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))


def scenario_large_message(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = [Sent(b"large", random.randbytes(900_000))]
    produce(ctx, topic, records, {"acks": "all", "message.max.bytes": 2_000_000})
    check_round_trip(records, read_partitions(ctx, topic, range(3), 1))


def scenario_consume_beginning(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = numbered(50)
    produce(ctx, topic, records, {"acks": "all"}, partition=0)
    check_offsets(read_partitions(ctx, topic, [0], 50, OFFSET_BEGINNING), 0, 0, records)


def scenario_consume_offset(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = numbered(100)
    produce(ctx, topic, records, {"acks": "all"}, partition=0)
    check_offsets(read_partitions(ctx, topic, [0], 60, 40), 0, 40, records)


def scenario_consume_timestamp(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    # In the past, inside the broker's accepted window (Kafka 4 rejects timestamps more
    # than an hour ahead) and far inside the default 7-day retention.
    t0 = int(time.time() * 1000) - 3 * 3600 * 1000
    t1 = t0 + 3600 * 1000
    records = numbered(100)
    for i, record in enumerate(records):
        record.timestamp = (t0 + i) if i < 50 else (t1 + i - 50)
    produce(ctx, topic, records[:50], {"acks": "all"}, partition=0)
    produce(ctx, topic, records[50:], {"acks": "all"}, partition=0)
    with Closing(new_consumer(ctx)) as consumer:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, t1)], timeout=ctx.timeout(15))
        if found[0].error is not None or found[0].offset != 50:
            raise Failure(f"offsets_for_times({t1}) = offset {found[0].offset} "
                          f"(error {found[0].error}), expected 50")
        consumer.assign([TopicPartition(topic, 0, found[0].offset)])
        check_offsets(poll_records(ctx, consumer, 50), 0, 50, records)


def scenario_consume_end(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = numbered(30)
    produce(ctx, topic, records[:20], {"acks": "all"}, partition=0)
    # librdkafka reports no position until a record arrives, but with partition EOF events on
    # it says when the fetcher reached the end: that is "positioned".
    with Closing(new_consumer(ctx, {"enable.partition.eof": True})) as consumer:
        consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        eof = {}
        early = poll_until_eof(ctx, consumer, eof)
        if early:
            raise Failure(f"a consumer at the latest offset read old records: {early[:5]}")
        if eof[0] != 20:
            raise Failure(f"positioned at the end at offset {eof[0]}, expected 20")
        produce(ctx, topic, records[20:], {"acks": "all"}, partition=0)
        check_offsets(poll_records(ctx, consumer, 10, eof={}), 0, 20, records)


def poll_until_eof(ctx, consumer, eof, seconds=20):
    got = []
    end = time.monotonic() + ctx.timeout(seconds)
    while 0 not in eof:
        if time.monotonic() > end:
            raise Failure(f"no end-of-partition event within {seconds} s after assigning OFFSET_END")
        got += poll_records(ctx, consumer, 1 << 30, seconds=0.5, eof=eof)
    return got


def scenario_idempotent(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    records = numbered(300)
    produce(ctx, topic, records, {"enable.idempotence": True, "acks": "all"})
    check_round_trip(records, read_partitions(ctx, topic, range(3), len(records)))


# ------------------------------------------------------------ group-rebalance, commit-resume


def group_consumer(ctx, group):
    # Manual commits: the scenario decides what is committed and when.
    return new_consumer(ctx, {"group.id": group, "enable.auto.commit": False,
                              "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})


def assigned(consumer):
    return {tp.partition for tp in consumer.assignment()}


def poll_members(ctx, members, seconds, condition):
    """Polls every member in turn (a member that is not polled cannot take part in a
    rebalance) until condition() has held for 1 s; records read meanwhile are returned per
    member. Failure when it does not within `seconds`."""
    got = {id(m): [] for m in members}
    end = time.monotonic() + ctx.timeout(seconds)
    held_since = None
    while time.monotonic() < end:
        for member in members:
            msg = member.poll(0.1)
            if msg is not None and msg.error() is None:
                got[id(member)].append(to_got(msg))
            elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                raise ConsumerError(msg.error())
        if condition():
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= 1.0:
                return got
        else:
            held_since = None
    raise Failure(f"assignments did not settle within {seconds} s: "
                  f"{[sorted(assigned(m)) for m in members]}")


def consume_members(ctx, members, want, seconds=30):
    """Polls every member in turn until `want` records in total, plus SETTLE_S for extras;
    {id(member): [Got]}."""
    got = {id(m): [] for m in members}
    end = time.monotonic() + ctx.timeout(seconds)
    settle_end = None
    while time.monotonic() < (settle_end or end):
        for member in members:
            msg = member.poll(0.05)
            if msg is not None and msg.error() is None:
                got[id(member)].append(to_got(msg))
            elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                raise ConsumerError(msg.error())
        if settle_end is None and sum(map(len, got.values())) >= want:
            settle_end = time.monotonic() + SETTLE_S
    return got


def commit_sync(consumer):
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:  # a member that read nothing has nothing to commit
        if kafka_error(exc).code() != KafkaError._NO_OFFSET:
            raise Failure(f"commit failed: {kafka_error(exc)}") from None


def scenario_group_rebalance(ctx):
    topic = create_topic(ctx, new_admin(ctx), 4)
    group = ctx.name("group")
    with Closing(group_consumer(ctx, group)) as a, Closing(group_consumer(ctx, group)) as b:
        a.subscribe([topic])
        b.subscribe([topic])

        def split():
            pa, pb = assigned(a), assigned(b)
            return pa and pb and not pa & pb and pa | pb == {0, 1, 2, 3}

        poll_members(ctx, [a, b], 40, split)
        owner = {p: "a" for p in assigned(a)} | {p: "b" for p in assigned(b)}
        ctx.log(f"assignment: a={sorted(assigned(a))} b={sorted(assigned(b))}")

        records = numbered(300)
        produce(ctx, topic, records[:200], {"acks": "all"})
        got = consume_members(ctx, [a, b], 200)
        for name, member in (("a", a), ("b", b)):
            wrong = [g for g in got[id(member)] if owner[g.partition] != name]
            if wrong:
                raise Failure(f"consumer {name} read records of partitions it does not own: {wrong[:5]}")
        # Each partition was read by one member only, so per-partition order survives.
        check_round_trip(records[:200], got[id(a)] + got[id(b)])
        if {p: "a" for p in assigned(a)} | {p: "b" for p in assigned(b)} != owner:
            raise Failure(f"assignment changed while consuming: a={sorted(assigned(a))} b={sorted(assigned(b))}")

        # Both commit what they read, so the partitions b hands over resume where b left.
        commit_sync(a)
        commit_sync(b)
        b.close()
        poll_members(ctx, [a], 40, lambda: assigned(a) == {0, 1, 2, 3})
        produce(ctx, topic, records[200:], {"acks": "all"})
        check_round_trip(records[200:], consume_members(ctx, [a], 100)[id(a)])


def scenario_commit_resume(ctx):
    topic = create_topic(ctx, new_admin(ctx), 1)
    group = ctx.name("group")
    records = numbered(150)
    produce(ctx, topic, records, {"acks": "all"})
    with Closing(group_consumer(ctx, group)) as first:
        first.subscribe([topic])
        processed = []
        end = time.monotonic() + ctx.timeout(30)
        while len(processed) < 100 and time.monotonic() < end:  # poll() gives one record
            msg = first.poll(0.2)
            if msg is not None and msg.error() is None:
                processed.append(to_got(msg))
            elif msg is not None:
                raise ConsumerError(msg.error())
        check_offsets(processed, 0, 0, records[:100])
        try:
            first.commit(offsets=[TopicPartition(topic, 0, 100)], asynchronous=False)
        except KafkaException as exc:
            raise Failure(f"commit of offset 100 failed: {kafka_error(exc)}") from None
    with Closing(group_consumer(ctx, group)) as second:
        second.subscribe([topic])
        check_offsets(poll_records(ctx, second, 50), 0, 100, records)


# ---------------------------------------------------------------------------- admin


def describe_topic(ctx, admin, topic):
    return result(ctx, admin.describe_topics(TopicCollection([topic]))[topic], f"describe_topics({topic})")


def scenario_admin_topics(ctx):
    admin = new_admin(ctx)
    topic = create_topic(ctx, admin, 3)
    if topic not in admin.list_topics(timeout=ctx.timeout(10)).topics:
        raise Failure(f"created topic {topic} is not listed")
    result(ctx, admin.create_partitions([NewPartitions(topic, 5)])[topic], "create_partitions(5)")
    # The new partitions reach the metadata a moment after the request completes.
    if not ctx.wait_until(10, lambda: len(describe_topic(ctx, admin, topic).partitions) == 5):
        raise Failure(f"describe shows {len(describe_topic(ctx, admin, topic).partitions)} partitions "
                      "after growing to 5")
    result(ctx, admin.delete_topics([topic], operation_timeout=20)[topic], f"delete_topics({topic})")
    if not ctx.wait_until(10, lambda: topic not in admin.list_topics(timeout=ctx.timeout(10)).topics):
        raise Failure(f"deleted topic {topic} is still listed after 10 s")


def retention(ctx, admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = result(ctx, admin.describe_configs([resource])[resource], "describe_configs")
    entry = entries.get("retention.ms")
    return entry.value if entry is not None else None


def scenario_admin_configs(ctx):
    admin = new_admin(ctx)
    topic = create_topic(ctx, admin, 3, config={"retention.ms": "3600000"})
    if not ctx.wait_until(10, lambda: retention(ctx, admin, topic) == "3600000"):
        raise Failure(f"describe_configs shows retention.ms={retention(ctx, admin, topic)}, created with 3600000")
    change = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    result(ctx, admin.incremental_alter_configs([change])[change], "incremental_alter_configs")
    if not ctx.wait_until(10, lambda: retention(ctx, admin, topic) == "7200000"):
        raise Failure(f"describe_configs shows retention.ms={retention(ctx, admin, topic)} after "
                      "incremental_alter_configs set it to 7200000")


def scenario_delete_records(ctx):
    admin = new_admin(ctx)
    topic = create_topic(ctx, admin, 3)
    records = numbered(100)
    produce(ctx, topic, records, {"acks": "all"}, partition=0)
    tp = TopicPartition(topic, 0, 30)
    deleted = result(ctx, admin.delete_records([tp])[tp], "delete_records(before 30)")
    if deleted.low_watermark != 30:
        raise Failure(f"delete_records reports low watermark {deleted.low_watermark}, expected 30")
    low, high = watermarks(ctx, topic, 0)
    if (low, high) != (30, 100):
        raise Failure(f"watermarks after delete_records are ({low}, {high}), expected (30, 100)")
    check_offsets(read_partitions(ctx, topic, [0], 70, OFFSET_BEGINNING), 0, 30, records)


# ---------------------------------------------------------------------------- errors


def expect_error(ctx, future, what, code):
    """The future fails with KafkaError `code`; Failure otherwise."""
    try:
        value = future.result(timeout=ctx.timeout(30))
    except KafkaException as exc:
        err = kafka_error(exc)
        if err.code() != code:
            raise Failure(f"{what}: expected {KafkaError(code).name()}, got {err}") from None
        ctx.log(f"{what}: {err}")
        return
    except TimeoutError:
        raise Failure(f"{what}: no answer within 30 s") from None
    raise Failure(f"{what}: expected {KafkaError(code).name()}, succeeded with {value}")


def scenario_error_unknown_topic(ctx):
    admin = new_admin(ctx)
    topic = ctx.name("missing")
    future = admin.describe_topics(TopicCollection([topic]))[topic]
    expect_error(ctx, future, f"describe_topics({topic})", KafkaError.UNKNOWN_TOPIC_OR_PART)


def scenario_error_invalid_topic(ctx):
    admin = new_admin(ctx)  # kept referenced: destroying it would fail the future
    future = admin.create_topics([NewTopic("bad/name", 3, 1)])["bad/name"]
    expect_error(ctx, future, "create_topics(bad/name)", KafkaError.TOPIC_EXCEPTION)


def scenario_error_too_large(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    try:
        produce(ctx, topic, [Sent(b"big", random.randbytes(2_000_000))],
                {"acks": "all", "message.max.bytes": 4 * 1024 * 1024})
    except Failure as failure:
        if "MSG_SIZE_TOO_LARGE" not in str(failure):
            raise Failure(f"expected MSG_SIZE_TOO_LARGE, {failure}") from None
        ctx.log(str(failure))
    else:
        raise Failure("a 2,000,000-byte record to a topic with max.message.bytes 1 MiB was accepted")
    for partition in range(3):
        low, high = watermarks(ctx, topic, partition)
        if high != 0:
            raise Failure(f"the topic is not empty: partition {partition} has high watermark {high}")


def scenario_error_out_of_range(ctx):
    topic = create_topic(ctx, new_admin(ctx), 3)
    produce(ctx, topic, numbered(10), {"acks": "all"}, partition=0)
    try:
        got = read_partitions(ctx, topic, [0], 1, 1000, {"auto.offset.reset": "error"})
    except ConsumerError as failure:
        err = failure.error
        # librdkafka hands the broker's OFFSET_OUT_OF_RANGE to the application as
        # _AUTO_OFFSET_RESET ("... Broker: Offset out of range") when the policy is 'error'.
        if err.code() == KafkaError.OFFSET_OUT_OF_RANGE or (
                err.code() == KafkaError._AUTO_OFFSET_RESET and "Offset out of range" in err.str()):
            ctx.log(f"consumer error: {err}")
            return
        raise Failure(f"expected Offset out of range, got {err}") from None
    raise Failure(f"no error from offset 1000 with auto.offset.reset=error; read {got[:5]}")



# ---------------------------------------------------------------------------- transactions


TXN_TIMEOUT_MS = 30000


def txn_producer(ctx, transactional_id):
    return new_producer(ctx, {"transactional.id": transactional_id, "acks": "all",
                              "transaction.timeout.ms": TXN_TIMEOUT_MS})


def txn_call(ctx, what, call, *args):
    """One transactional API call; the client's error becomes a Failure naming the step."""
    try:
        return call(*args)
    except KafkaException as exc:
        raise Failure(f"{what} failed: {kafka_error(exc)}") from None


def txn_send(ctx, producer, topic, values):
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for value in values:
        produce_one(ctx, producer, topic, {"key": value, "value": value, "partition": 0,
                                            "on_delivery": report})
    left = producer.flush(ctx.timeout(30))
    if errors or left:
        raise Failure(f"transactional sends of {values[0]!r}..: {errors[:1]} failed, {left} undelivered")


def fenced(error):
    return error is not None and error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                                  KafkaError.INVALID_PRODUCER_EPOCH)


def scenario_transactions(ctx):
    admin = new_admin(ctx)
    output = create_topic(ctx, admin, 1, tag="out")
    source = create_topic(ctx, admin, 1, tag="in")
    group = ctx.name("group")
    inputs = [f"in-{i}".encode() for i in range(3)]
    produce(ctx, source, [Sent(v, v) for v in inputs], {"acks": "all"}, partition=0)
    t1 = [f"t1-{i}".encode() for i in range(10)]
    t2 = [f"t2-{i}".encode() for i in range(5)]
    t3 = [f"t3-{i}".encode() for i in range(3)]
    transactional_id = ctx.name()

    first = txn_producer(ctx, transactional_id)
    txn_call(ctx, "init_transactions", first.init_transactions, ctx.timeout(30))
    txn_call(ctx, "begin_transaction 1", first.begin_transaction)
    txn_send(ctx, first, output, t1)
    txn_call(ctx, "commit_transaction 1", first.commit_transaction, ctx.timeout(30))
    txn_call(ctx, "begin_transaction 2", first.begin_transaction)
    txn_send(ctx, first, output, t2)
    txn_call(ctx, "abort_transaction 2", first.abort_transaction, ctx.timeout(30))

    # Transaction 3: consume the input as a group member, produce, commit the offsets with it.
    with Closing(group_consumer(ctx, group)) as member:
        member.subscribe([source])
        read = []
        end = time.monotonic() + ctx.timeout(30)
        while len(read) < len(inputs) and time.monotonic() < end:
            msg = member.poll(0.2)
            if msg is not None and msg.error() is None:
                read.append(msg.value())
            elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                raise ConsumerError(msg.error())
        if read != inputs:
            raise Failure(f"the group member read {read} from the input topic, expected {inputs}")
        txn_call(ctx, "begin_transaction 3", first.begin_transaction)
        txn_send(ctx, first, output, t3)
        txn_call(ctx, "send_offsets_to_transaction", first.send_offsets_to_transaction,
                 [TopicPartition(source, 0, len(inputs))], member.consumer_group_metadata(),
                 ctx.timeout(30))
        txn_call(ctx, "commit_transaction 3", first.commit_transaction, ctx.timeout(30))
        committed = txn_call(ctx, "committed", member.committed, [TopicPartition(source, 0)],
                             ctx.timeout(10))
        if committed[0].offset != len(inputs):
            raise Failure(f"group {group} committed offset of the input is {committed[0].offset}, expected 3")

    # A second producer with the same transactional.id fences the first.
    second = txn_producer(ctx, transactional_id)
    txn_call(ctx, "init_transactions (second producer)", second.init_transactions, ctx.timeout(30))
    second.flush(1)
    del second
    error = None
    try:
        first.begin_transaction()
        first.produce(output, key=b"fenced", value=b"fenced", partition=0)
        first.commit_transaction(ctx.timeout(30))
    except KafkaException as exc:
        error = kafka_error(exc)
    if error is None:
        raise Failure("the fenced producer committed a transaction after a second producer "
                      "with its transactional.id initialised")
    if not fenced(error):
        raise Failure(f"the fenced producer's commit failed with {error}, expected a fenced error")
    ctx.log(f"first producer fenced: {error}")

    committed_view = [g.value for g in read_partitions(
        ctx, output, [0], len(t1) + len(t3), extra={"isolation.level": "read_committed"})]
    if committed_view != t1 + t3:
        raise Failure(f"read_committed read {len(committed_view)} records {committed_view[:20]}, "
                      f"expected t1-0..t1-9, t3-0..t3-2")
    everything = [g.value for g in read_partitions(
        ctx, output, [0], len(t1) + len(t2) + len(t3), extra={"isolation.level": "read_uncommitted"})]
    if everything != t1 + t2 + t3:
        raise Failure(f"read_uncommitted read {len(everything)} records {everything[:20]}, "
                      f"expected t1-0..t1-9, t2-0..t2-4, t3-0..t3-2")


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
}

if __name__ == "__main__":
    sys.exit(main(FAMILY, SCENARIOS))
