"""Helpers for the durability scenario (the broker kills and restarts live in
compat-tests/broker-scenarios.sh).

usage:
  durability.py produce BOOTSTRAP TOPIC STATE        acks=all producer (confluent-kafka); saves
                                                     every acknowledged (partition, offset)
  durability.py verify BOOTSTRAP TOPIC STATE         every acknowledged record reads back
                                                     byte-identical at its offset
  durability.py damage DATA_DIR TOPIC STATE P MODE N kill -9 already done: MODE 'truncate'
                                                     cuts N bytes off, 'append' adds N garbage
                                                     bytes to, the newest .log of partition P;
                                                     records which offsets the cut may take
  durability.py append-after BOOTSTRAP TOPIC STATE   after the damaged restart: one new record
                                                     per damaged partition lands right after the
                                                     surviving records and reads back (verify
                                                     checks it from then on)

Each command prints nothing on success; on failure it prints the reason to stdout and exits 1.
"""

import json
import os
import struct
import sys

from common import compare, make_records, produce, read_back, summarize, watermarks

PARTITIONS = 3
COUNT = 1500
# Small batches so every partition log holds many batches and a cut hits only the last one.
PRODUCER = {"acks": "all", "linger.ms": 2, "batch.num.messages": 25}


def records():
    return make_records("dur", COUNT, seed=5)


def load(state):
    with open(state) as f:
        data = json.load(f)
    data["acks"] = {int(i): tuple(v) for i, v in data["acks"].items()}
    data["lost_from"] = {int(p): off for p, off in data.get("lost_from", {}).items()}
    data["after"] = {int(p): off for p, off in data.get("after", {}).items()}
    return data


def save(state, data):
    with open(state, "w") as f:
        json.dump(data, f)


def cmd_produce(bootstrap, topic, state):
    config = {"bootstrap.servers": bootstrap, **PRODUCER}
    acks, errors = produce(config, topic, records(), partition_of=lambda i: i % PARTITIONS)
    save(state, {"acks": acks})
    if errors:
        return f"producer: {summarize(errors)}"
    if len(acks) != COUNT:
        return f"only {len(acks)}/{COUNT} records acknowledged"
    return None


def read_all(bootstrap, topic, data):
    until = {}
    for p, off in data["acks"].values():
        if off < data["lost_from"].get(p, 1 << 62):
            until[p] = max(until.get(p, 0), off + 1)
    for p, off in data["after"].items():
        until[p] = max(until.get(p, 0), off + 1)
    # Say first whether the broker even admits to the records (high watermark), then read.
    problems = [
        f"p{p} high watermark {high} after restart, {until.get(p, 0)} records acknowledged below it"
        for p, (_low, high) in sorted(watermarks(bootstrap, topic, range(PARTITIONS)).items())
        if high < until.get(p, 0)
    ]
    got, read_problems = read_back(bootstrap, topic, range(PARTITIONS), until, timeout_s=20 if problems else 60)
    return got, problems + read_problems


def cmd_verify(bootstrap, topic, state):
    data = load(state)
    got, problems = read_all(bootstrap, topic, data)
    lost_from = data["lost_from"]
    # Records written after the damage (append-after) are acknowledged too: they must stay.
    for p, off in data["after"].items():
        if got.pop((p, off), None) != after_record(p):
            problems.append(f"p{p}: the record acknowledged at offset {off} after the damaged restart is gone")
    problems += compare(
        records(), data["acks"], got, allowed_missing=lambda p, off: off >= lost_from.get(p, 1 << 62)
    )
    return summarize(problems) if problems else None


def after_record(p):
    return (f"after-{p}".encode(), b"written after recovery", [("after", b"1")])


def batches(path):
    """(position, base offset, last offset) of each whole RecordBatch in a .log file."""
    out, pos = [], 0
    with open(path, "rb") as f:
        data = f.read()
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if length < 49 or end > len(data):
            break
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        out.append((pos, base, base + last_delta, end))
        pos = end
    return out


def cmd_damage(data_dir, topic, state, partition, mode, nbytes):
    partition, nbytes = int(partition), int(nbytes)
    pdir = os.path.join(data_dir, f"{topic}-{partition}")
    logs = sorted(f for f in os.listdir(pdir) if f.endswith(".log"))
    if not logs:
        return f"no .log file in {pdir}"
    path = os.path.join(pdir, logs[-1])
    size = os.path.getsize(path)
    whole = batches(path)
    if not whole or whole[-1][3] != size:
        return f"{path} ({size} bytes) does not end on a batch boundary before the damage"
    data = load(state)
    if mode == "truncate":
        cut = size - nbytes
        os.truncate(path, cut)
        # The batch the cut lands in is gone; every batch wholly before the cut must survive.
        first_lost = min(base for pos, base, last, end in whole if end > cut)
        data["lost_from"][partition] = first_lost
    elif mode == "append":
        with open(path, "ab") as f:
            f.write(bytes((i * 37 + 11) % 256 for i in range(nbytes)))
        data["garbage"] = data.get("garbage", []) + [partition]
    else:
        return f"unknown damage mode {mode}"
    save(state, data)
    return None


def cmd_append_after(bootstrap, topic, state):
    """The first new record of a damaged partition must take the offset right after the last
    surviving one (truncated: the first lost offset; garbage: the old end) and read back."""
    data = load(state)
    expect = {}
    for p, off in data["lost_from"].items():
        expect[p] = off
    for p in data.get("garbage", []):
        expect[p] = 1 + max(off for q, off in data["acks"].values() if q == p)
    problems = []
    for p, want in sorted(expect.items()):
        rec = [after_record(p)]
        acks, errors = produce(
            {"bootstrap.servers": bootstrap, **PRODUCER}, topic, rec, partition_of=lambda i: p
        )
        if errors or 0 not in acks:
            problems.append(f"p{p}: produce after recovery failed: {summarize(errors)}")
            continue
        data["after"][p] = acks[0][1]
        if acks[0] != (p, want):
            problems.append(f"p{p}: new record acknowledged at offset {acks[0][1]}, expected {want}")
            continue
        got, read_problems = read_back(bootstrap, topic, [p], {p: want + 1}, timeout_s=20)
        problems += read_problems
        if got.get((p, want)) != rec[0]:
            problems.append(f"p{p}: new record at offset {want} does not read back")
    save(state, data)
    return summarize(problems) if problems else None


def main():
    commands = {
        "produce": cmd_produce,
        "verify": cmd_verify,
        "damage": cmd_damage,
        "append-after": cmd_append_after,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        failure = commands[sys.argv[1]](*sys.argv[2:])
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    if failure:
        print(failure, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
