#!/usr/bin/env python3
"""The confluent-kafka (librdkafka) part of scripts/fuzz.sh --capture: an admin client, an
idempotent producer per codec and a group consumer, each with its own client.id so that the
capture names their frames. Every step is bounded in time and a failing step is reported
and skipped: the point is the requests the clients send, not what the broker answers.

usage: capture_clients.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def step(name, function):
    try:
        function()
        print(f"capture_clients: {name}: ok", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - any client failure only skips the step
        print(f"capture_clients: {name}: {error}", file=sys.stderr)


def admin(bootstrap):
    client = AdminClient({"bootstrap.servers": bootstrap, "client.id": "ck-admin"})
    for future in client.create_topics(
        [NewTopic("ck-admin", num_partitions=1, replication_factor=1)], request_timeout=10
    ).values():
        future.result(timeout=15)
    for future in client.create_partitions(
        [NewPartitions("ck-admin", 2)], request_timeout=10
    ).values():
        future.result(timeout=15)
    for future in client.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, "ck-admin")], request_timeout=10
    ).values():
        future.result(timeout=15)
    client.list_topics(timeout=10)
    for future in client.delete_topics(["ck-admin"], request_timeout=10).values():
        future.result(timeout=15)


def produce(bootstrap, codec):
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": f"ck-produce-{codec}",
            "enable.idempotence": True,
            "compression.type": codec,
            "linger.ms": 20,
        }
    )
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))

    for i in range(12):
        producer.produce(
            "ck-capture",
            key=f"k{i}".encode(),
            value=(f"confluent-kafka {codec} record {i} " * (1 + i % 4)).encode(),
            headers=[("i", str(i).encode()), ("codec", codec.encode())],
            partition=0,
            on_delivery=report,
        )
    left = producer.flush(20)
    if left or errors:
        raise RuntimeError(f"{left} undelivered, errors {errors[:3]}")


def consume(bootstrap):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "ck-consume",
            "group.id": f"ck-capture-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["ck-capture"])
    got = 0
    deadline = time.monotonic() + 20
    while got < 12 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got += 1
    if got:
        consumer.commit(asynchronous=False)
    consumer.close()
    if not got:
        raise RuntimeError("no records consumed")


def main():
    bootstrap = sys.argv[1]
    step("admin", lambda: admin(bootstrap))
    for codec in CODECS:
        step(f"produce {codec}", lambda codec=codec: produce(bootstrap, codec))
    step("group consumer", lambda: consume(bootstrap))


if __name__ == "__main__":
    main()
