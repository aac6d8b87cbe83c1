"""Consumer groups, scenario 2: confluent-kafka consumers (subscribe, eager range assignment,
manual synchronous commits) on a 6-partition topic, each member its own process.

  groups-python-share   three members hold partitions, none twice, all 6 covered; 600 records
                        produced then are consumed exactly once, each by its partition's owner
  groups-python-kill9   one member is kill -9ed while records flow: within the session timeout
                        (6 s, plus a rebalance) the other two hold all 6 partitions and every
                        record is consumed; duplicates only of records the killed member read
                        after its last commit
  groups-python-resume  all members stop (commit, LeaveGroup): the committed offsets are the
                        log ends; records produced meanwhile are read by two new members from
                        exactly the committed offsets, once each, nothing skipped

A member commits (synchronously) after every batch it consumed and in its revoke callback, and
logs assignments, records and commits to a JSON-lines file the orchestrator reads.

usage: python_group.py BOOTSTRAP TOPIC WORKDIR            (the scenario; PASS/FAIL lines)
       python_group.py member BOOTSTRAP TOPIC GROUP EVENTS (one member, run by the scenario)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

import admin  # noqa: E402
from common import produce  # noqa: E402

PARTITIONS = 6
ALL = set(range(PARTITIONS))
SESSION_TIMEOUT_MS = 6000
# The kill -9ed member's partitions must have moved this long after the kill: its session
# timeout plus one heartbeat interval and a rebalance.
MOVE_LIMIT_S = SESSION_TIMEOUT_MS / 1000 + 4


# ---------------------------------------------------------------------------- a member


def member(bootstrap, topic, group, events_path):
    events = open(events_path, "a", buffering=1)

    def log(**event):
        events.write(json.dumps(event) + "\n")
        events.flush()

    consumed = {}  # partition -> next offset, not yet committed
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": os.path.basename(events_path),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 1000,
            "error_cb": lambda err: log(error=str(err)),
        }
    )

    def commit(partitions):
        offsets = [TopicPartition(topic, p, consumed[p]) for p in partitions if p in consumed]
        if not offsets:
            return
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as e:  # noqa: BLE001 - logged for the orchestrator
            log(error=f"commit {[(tp.partition, tp.offset) for tp in offsets]}: {e}")
            return
        for tp in result:
            if tp.error is None:
                consumed.pop(tp.partition, None)
        log(committed={tp.partition: tp.offset for tp in result if tp.error is None})

    def on_assign(_consumer, partitions):
        log(assigned=sorted(tp.partition for tp in partitions))

    def on_revoke(_consumer, partitions):
        commit([tp.partition for tp in partitions])
        log(revoked=sorted(tp.partition for tp in partitions))

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    log(started=os.getpid())
    while not stop:
        msgs = consumer.consume(num_messages=200, timeout=0.3)
        batch = []
        for msg in msgs:
            if msg.error():
                log(error=str(msg.error()))
                continue
            batch.append([msg.partition(), msg.offset(), msg.value().decode()])
            consumed[msg.partition()] = msg.offset() + 1
        if batch:
            log(records=batch)
            commit(list(consumed))
    commit(list(consumed))
    consumer.close()
    log(closed=True)


# ---------------------------------------------------------------------------- the scenario


class Member:
    def __init__(self, args, name, work):
        self.name = name
        self.path = os.path.join(work, f"{name}.jsonl")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "member", *args, self.path],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, f"{name}.stderr"), "w"),
        )

    def events(self):
        try:
            with open(self.path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def assignment(self):
        held = set()
        for e in self.events():
            held |= set(e.get("assigned", []))
            held -= set(e.get("revoked", []))
        return held

    def records(self):
        """[(partition, offset, value)] in the order consumed."""
        return [tuple(r) for e in self.events() for r in e.get("records", [])]

    def last_commits(self):
        """{partition: last committed offset} as this member logged them."""
        out = {}
        for e in self.events():
            out.update({int(p): off for p, off in e.get("committed", {}).items()})
        return out

    def errors(self):
        return [e["error"] for e in self.events() if "error" in e]

    def stop(self, timeout=15):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


def wait_until(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def shared(members):
    """Every member holds partitions, no partition twice, all covered."""
    held = [m.assignment() for m in members]
    return all(held) and sum(len(h) for h in held) == PARTITIONS and set().union(*held) == ALL


def describe(members):
    return ", ".join(f"{m.name} {sorted(m.assignment())}" for m in members)


def first_errors(members):
    errs = [f"{m.name}: {e}" for m in members for e in m.errors()]
    return f"; client errors: {errs[:2]}" if errs else ""


def values(members, phase):
    """{value: [(member, partition, offset)]} of the records of PHASE consumed by MEMBERS."""
    out = {}
    for m in members:
        for p, off, v in m.records():
            if v.startswith(phase + "-"):
                out.setdefault(v, []).append((m.name, p, off))
    return out


def make(phase, count):
    return [(f"k{phase}{i}".encode(), f"{phase}-{i}".encode(), []) for i in range(count)]


def send(bootstrap, topic, phase, count):
    acks, errors = produce({"bootstrap.servers": bootstrap, "linger.ms": 5}, topic, make(phase, count))
    if errors:
        raise RuntimeError(f"producing {phase}: {errors[:2]}")
    return {f"{phase}-{i}": ack for i, ack in acks.items()}


def result(name, problems):
    if problems:
        print(f"FAIL {name}: {'; '.join(problems)[:700]}", flush=True)
    else:
        print(f"PASS {name}", flush=True)
    return not problems


def scenario(bootstrap, topic, work):
    os.makedirs(work, exist_ok=True)
    group = topic
    args = [bootstrap, topic, group]
    admin.create(bootstrap, topic, PARTITIONS)
    members = [Member(args, name, work) for name in ("m1", "m2", "m3")]
    try:
        return run(bootstrap, topic, work, members, args)
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()


def run(bootstrap, topic, work, members, args):
    # 1. Three members share the six partitions; 600 records exactly once, by their owners.
    if not wait_until(lambda: shared(members), 45):
        return result("groups-python-share", [f"after 45 s: {describe(members)}{first_errors(members)}"])
    owner = {p: m.name for m in members for p in m.assignment()}
    sent = send(bootstrap, topic, "one", 600)
    wait_until(lambda: len(values(members, "one")) >= len(sent), 30)
    got = values(members, "one")
    problems = []
    if len(got) < len(sent):
        problems.append(f"consumed {len(got)} of {len(sent)} records within 30 s")
    twice = [v for v, seen in got.items() if len(seen) > 1]
    if twice:
        problems.append(f"{len(twice)} records consumed twice, e.g. {twice[0]}: {got[twice[0]]}")
    foreign = [(v, s) for v, seen in got.items() for s in seen if owner.get(s[1]) != s[0]]
    if foreign:
        problems.append(f"records consumed by a member not owning the partition, e.g. {foreign[0]} ({describe(members)})")
    result("groups-python-share", problems)

    # 2. kill -9 one member while records flow.
    m1, m2, m3 = members
    victim_partitions = m3.assignment()
    sent2 = {}
    producer = threading.Thread(target=lambda: sent2.update(send_slowly(bootstrap, topic, "two", 600)))
    producer.start()
    time.sleep(1.0)
    m3.proc.kill()
    m3.proc.wait()
    killed = time.monotonic()
    moved = wait_until(lambda: shared([m1, m2]), 30)
    took = time.monotonic() - killed
    producer.join(60)
    problems = []
    if not moved:
        problems.append(f"30 s after kill -9 of m3 (held {sorted(victim_partitions)}): {describe([m1, m2])}{first_errors([m1, m2])}")
    elif took > MOVE_LIMIT_S:
        problems.append(f"m3's partitions moved {took:.1f} s after its kill -9, more than the session timeout {SESSION_TIMEOUT_MS} ms + 4 s")
    print(f"m3's partitions {sorted(victim_partitions)} moved {took:.1f} s after kill -9", file=sys.stderr)
    if len(sent2) < 600:
        problems.append(f"only {len(sent2)} of 600 records of phase two acknowledged")
    wait_until(lambda: len(values(members, "two")) >= len(sent2), 30)
    problems += lost_or_duplicated(members, ["one", "two"], {**sent, **sent2}, m3)
    result("groups-python-kill9", problems)

    # 3. Everyone stops; records produced meanwhile are read from the committed offsets.
    problems = []
    for m in (m1, m2):
        if not m.stop():
            problems.append(f"{m.name} did not stop within 15 s of SIGTERM")
    ends = admin.ends(bootstrap, topic)
    committed = admin.committed(bootstrap, topic, topic)
    if committed != ends:
        problems.append(f"after every member stopped, committed offsets {committed} are not the log ends {ends}")
    sent3 = send(bootstrap, topic, "three", 300)
    fresh = [Member(args, name, work) for name in ("m4", "m5")]
    members.extend(fresh)
    wait_until(lambda: len(values(fresh, "three")) >= len(sent3), 45)
    got = values(fresh, "three")
    if len(got) < len(sent3):
        problems.append(f"the restarted members consumed {len(got)} of {len(sent3)} new records within 45 s ({describe(fresh)}{first_errors(fresh)})")
    twice = [v for v, seen in got.items() if len(seen) > 1]
    if twice:
        problems.append(f"{len(twice)} new records consumed twice, e.g. {twice[0]}: {got[twice[0]]}")
    old = [r for m in fresh for r in m.records() if not r[2].startswith("three-")]
    if old:
        problems.append(f"{len(old)} records from before the restart consumed again, e.g. {old[0]} (committed {committed})")
    first = {}
    for m in fresh:
        for p, off, _v in m.records():
            first[p] = min(off, first.get(p, off))
    start = {p: off for p, off in committed.items() if p in first}
    if first != start:
        problems.append(f"first offsets read after the restart {dict(sorted(first.items()))}, committed were {committed}")
    result("groups-python-resume", problems)
    for m in fresh:
        m.stop()
    return True


def send_slowly(bootstrap, topic, phase, count):
    """COUNT records in 10 chunks over ~2 s, so a member dies while consuming."""
    out = {}
    for chunk in range(10):
        n = count // 10
        acks, errors = produce({"bootstrap.servers": bootstrap, "linger.ms": 5}, topic, make(phase, count)[chunk * n:(chunk + 1) * n])
        if errors:
            print(f"producing {phase}: {errors[:2]}", file=sys.stderr)
        out.update({f"{phase}-{chunk * n + i}": ack for i, ack in acks.items()})
        time.sleep(0.2)
    return out


def lost_or_duplicated(members, phases, sent, victim):
    """Every acknowledged record consumed; a record consumed twice only if the killed member
    read it at or after the last offset it committed for that partition."""
    problems = []
    got = {}
    for ph in phases:
        got.update(values(members, ph))
    missing = sorted(set(sent) - set(got))
    if missing:
        where = {sent[v] for v in missing[:3]}
        problems.append(f"{len(missing)} acknowledged records never consumed, e.g. {missing[:3]} at {sorted(where)}")
    last = victim.last_commits()
    bad = []
    for v, seen in got.items():
        if len(seen) < 2:
            continue
        excused = any(name == victim.name and off >= last.get(p, 0) for name, p, off in seen)
        if not excused:
            bad.append((v, seen))
    if bad:
        problems.append(f"{len(bad)} records consumed twice that the killed member had not read after its last commit, e.g. {bad[0]} (its commits {last})")
    dups = sum(1 for seen in got.values() if len(seen) > 1)
    print(f"duplicates after the kill -9: {dups} (allowed: read by the killed member after its last commit)", file=sys.stderr)
    return problems


def main():
    if sys.argv[1] == "member":
        member(*sys.argv[2:])
        return
    bootstrap, topic, work = sys.argv[1:4]
    # A timeout's SIGTERM must still stop the member processes (the finally in scenario()).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scenario(bootstrap, topic, work)
    except Exception as e:  # noqa: BLE001 - reported as a failure of the scenario
        print(f"FAIL groups-python: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
