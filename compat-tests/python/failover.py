"""confluent-kafka (librdkafka) through a partition leader's kill -9 on an LMQ cluster: an
idempotent acks=all producer and a consumer group member, both running across the kill
without a restart; every delivered record is read (at least once: a member that must rejoin
re-reads from its last auto-commit, as with Kafka), and the group's committed offsets are
where it left.

usage: failover.py BOOTSTRAP TOPIC CLUSTER_COMMAND...
(CLUSTER_COMMAND + ["kill", id] kills a broker, + ["start", id] restarts it: scripts/cluster.sh)
"""

import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COUNT = 4000
KILL_AT = 1200


def main():
    bootstrap, topic, cluster = sys.argv[1], sys.argv[2], sys.argv[3:]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics(
        [NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})]
    )
    created[topic].result(30)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
        }
    )
    delivered, failed = {}, []

    def report(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            delivered[msg.value().decode()] = (msg.partition(), msg.offset())

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-readers",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
        }
    )
    consumer.subscribe([topic])
    seen, stop = {}, threading.Event()

    def consume():
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            value = msg.value().decode()
            seen[value] = seen.get(value, 0) + 1

    reader = threading.Thread(target=consume)
    reader.start()
    victim = None
    started = time.monotonic()
    for i in range(COUNT):
        producer.produce(topic, value=str(i).encode(), callback=report)
        producer.poll(0)
        time.sleep(0.004)
        if i == KILL_AT:
            producer.flush(30)
            victim = producer.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
            subprocess.run(cluster + ["kill", str(victim)], check=True)
            print(f"killed broker {victim} (leader of {topic}-0) after {i + 1} records")
    left = producer.flush(150)
    print(f"produced {COUNT} in {time.monotonic() - started:.1f} s: {len(delivered)} delivered, "
          f"{len(failed)} failed, {left} undelivered")
    # Back to three brokers for what follows.
    subprocess.run(cluster + ["start", str(victim)], check=True)
    deadline = time.monotonic() + 90
    while any(v not in seen for v in delivered) and time.monotonic() < deadline:
        time.sleep(0.5)
    stop.set()
    reader.join()
    if failed or left or len(delivered) != COUNT:
        sys.exit(f"FAIL: not every record was delivered: {failed[:3]}")
    duplicates = sum(1 for n in seen.values() if n > 1)
    missing = [v for v in delivered if v not in seen]
    print(f"read {sum(seen.values())} records while producing: {len(missing)} missing, "
          f"{duplicates} read again")
    if missing:
        sys.exit(f"FAIL: missing {missing[:5]}")
    try:
        results = consumer.commit(asynchronous=False)
    except KafkaException as error:
        # The last auto-commit may already have committed every position.
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise
        results = []
    errors = [r for r in results or [] if r.error is not None]
    if errors:
        sys.exit(f"FAIL: the final commit answered {errors}")
    positions = consumer.position([TopicPartition(topic, p) for p in range(3)])
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
    consumer.close()
    if [p.offset for p in positions] != [c.offset for c in committed]:
        sys.exit(f"FAIL: committed {committed} != positions {positions}")
    print("PASS")


if __name__ == "__main__":
    try:
        main()
    except KafkaException as error:
        sys.exit(f"FAIL: {error}")
