"""Small admin helpers for the consumer-group scenarios (confluent-kafka's AdminClient and
OffsetFetch), usable from shell scripts.

usage:
  admin.py create BOOTSTRAP TOPIC PARTITIONS     create a topic (exit 1 with the error)
  admin.py ends BOOTSTRAP TOPIC                  {"partition": high watermark} as JSON
  admin.py committed BOOTSTRAP GROUP TOPIC       {"partition": committed offset} as JSON
                                                 (OffsetFetch; partitions without one left out)
  admin.py snapshot BOOTSTRAP STATE              add every listed group's committed offsets
                                                 (ListGroups, then OffsetFetch) to STATE
  admin.py commit BOOTSTRAP STATE GROUP TOPIC SEED
                                                 commit offsets derived from SEED to each partition
                                                 of TOPIC (created when missing) for GROUP (a
                                                 simple commit: no membership) and add them to STATE
  admin.py delete BOOTSTRAP STATE GROUP          DeleteGroups; STATE remembers it as deleted
  admin.py verify BOOTSTRAP STATE                OffsetFetch returns exactly STATE's offsets for
                                                 each group, ListGroups lists those with offsets,
                                                 deleted groups stay deleted (prints the
                                                 differences, exit 1; retried for 20 s)
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap, topic, partitions):
    client = admin(bootstrap)  # kept alive until the future resolves
    futures = client.create_topics([NewTopic(topic, int(partitions), 1)], operation_timeout=30)
    futures[topic].result(timeout=60)


def partitions_of(bootstrap, topic):
    meta = admin(bootstrap).list_topics(topic, timeout=30)  # synchronous
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        raise RuntimeError(f"topic {topic}: {info.error if info else 'not in metadata'}")
    return sorted(info.partitions)


def plain_consumer(bootstrap, group):
    # Only used for OffsetFetch / ListOffsets / simple commits: never subscribes, never joins.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})


def ends(bootstrap, topic):
    consumer = plain_consumer(bootstrap, f"lmq-compat-ends-{time.time_ns()}")
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions_of(bootstrap, topic)
        }
    finally:
        consumer.close()


def committed(bootstrap, group, topic, parts=None):
    """{partition: offset} for the partitions with a committed offset (OffsetFetch)."""
    consumer = plain_consumer(bootstrap, group)
    try:
        parts = parts if parts is not None else partitions_of(bootstrap, topic)
        got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=30)
        out = {}
        for tp in got:
            if tp.error is not None:
                raise KafkaException(tp.error)
            if tp.offset >= 0:
                out[tp.partition] = tp.offset
        return out
    finally:
        consumer.close()


def group_offsets(bootstrap, group):
    """Every committed offset of GROUP as {"topic/partition": offset} (Admin OffsetFetch)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    client = admin(bootstrap)
    future = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = future[group].result(timeout=60)
    return {
        f"{tp.topic}/{tp.partition}": tp.offset
        for tp in result.topic_partitions
        if tp.error is None and tp.offset >= 0
    }


def list_groups(bootstrap):
    client = admin(bootstrap)
    listed = client.list_consumer_groups(request_timeout=60).result(timeout=60)
    return sorted(g.group_id for g in listed.valid)


def load(state):
    try:
        with open(state) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"offsets": {}, "deleted": []}


def save(state, data):
    with open(state, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def cmd_snapshot(bootstrap, state):
    """Every listed group's committed offsets."""
    data = load(state)
    for group in list_groups(bootstrap):
        if group not in data["deleted"]:
            data["offsets"][group] = group_offsets(bootstrap, group)
    save(state, data)
    print(f"{len(data['offsets'])} groups, {sum(map(len, data['offsets'].values()))} committed offsets", file=sys.stderr)


def cmd_commit(bootstrap, state, group, topic, seed):
    """Commit offsets derived from SEED for GROUP on TOPIC (created with 6 partitions of 20
    records when missing) as a simple commit (no membership, generation -1)."""
    if topic not in admin(bootstrap).list_topics(timeout=30).topics:
        create(bootstrap, topic, 6)
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for i in range(120):
            producer.produce(topic, value=f"r{i}".encode(), partition=i % 6)
        if producer.flush(60):
            raise RuntimeError(f"could not produce to {topic}")
    highs = ends(bootstrap, topic)
    # Within each partition's log and different per SEED, so a restart cannot pass by
    # showing an older commit.
    offsets = {p: 1 + (int(seed) * 7 + p * 3) % highs[p] for p in highs}
    consumer = plain_consumer(bootstrap, group)
    try:
        tps = [TopicPartition(topic, p, off) for p, off in offsets.items()]
        for tp in consumer.commit(offsets=tps, asynchronous=False):
            if tp.error is not None:
                raise KafkaException(tp.error)
    finally:
        consumer.close()
    data = load(state)
    data["offsets"].setdefault(group, {}).update({f"{topic}/{p}": off for p, off in offsets.items()})
    save(state, data)


def cmd_delete(bootstrap, state, group):
    client = admin(bootstrap)
    client.delete_consumer_groups([group], request_timeout=60)[group].result(timeout=60)
    data = load(state)
    data["offsets"].pop(group, None)
    data["deleted"].append(group)
    save(state, data)


def verify_once(bootstrap, data):
    problems = []
    listed = set(list_groups(bootstrap))
    for group, expected in sorted(data["offsets"].items()):
        now = group_offsets(bootstrap, group)
        for key, off in sorted(expected.items()):
            if now.get(key) != off:
                problems.append(f"{group} {key}: committed {off} before, {now.get(key, 'none')} now")
        extra = sorted(set(now) - set(expected))
        if extra:
            problems.append(f"{group}: offsets that were never committed: {extra[:3]}")
        # Only groups with offsets: LMQ does not persist membership, so a group that never
        # committed is forgotten by a restart (Apache Kafka still lists it, as Empty).
        if expected and group not in listed:
            problems.append(f"{group} is not listed by ListGroups")
    for group in data["deleted"]:
        now = group_offsets(bootstrap, group)
        if now:
            problems.append(f"deleted group {group} has committed offsets again: {dict(list(now.items())[:3])}")
        if group in listed:
            problems.append(f"deleted group {group} is listed again")
    return problems


def cmd_verify(bootstrap, state, timeout_s=20):
    """Every group of STATE has exactly its offsets and is listed; deleted groups are gone.
    Retried for TIMEOUT_S: right after a restart a coordinator may still be loading its
    offsets (Apache Kafka answers COORDINATOR_LOAD_IN_PROGRESS meanwhile)."""
    data = load(state)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            problems = verify_once(bootstrap, data)
        except Exception as e:  # noqa: BLE001 - reported if it persists
            problems = [f"{type(e).__name__}: {e}"]
        if not problems:
            return
        if time.monotonic() > deadline:
            break
        print(f"verify: {problems[:2]}; retrying", file=sys.stderr)
        time.sleep(1)
    more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
    print("; ".join(problems[:4]) + more + f" (still after {timeout_s} s)")
    sys.exit(1)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        create(*args)
    elif cmd == "ends":
        print(json.dumps(ends(*args)))
    elif cmd == "committed":
        print(json.dumps(committed(*args)))
    elif cmd == "snapshot":
        cmd_snapshot(*args)
    elif cmd == "commit":
        cmd_commit(*args)
    elif cmd == "delete":
        cmd_delete(*args)
    elif cmd == "verify":
        cmd_verify(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
