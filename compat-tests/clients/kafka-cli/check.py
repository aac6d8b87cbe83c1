#!/usr/bin/env python3
"""Test data and checks of the kafka-cli family (used by ./run).

Records go in through ConsoleProducer as `key<TAB>value` lines and come back from
ConsoleConsumer, which ./run always starts with print.timestamp, print.partition, print.offset
and print.key, so every record it prints is one line:
`CreateTime:<ms><TAB>Partition:<p><TAB>Offset:<o><TAB><key><TAB><value>`.

ConsoleProducer reports no acknowledgement (partition, offset) per record, so the partition a
record must be at is the one the Java producer's default partitioner gives its key
(murmur2(key) mod partitions), and, the topic being new and written by one producer, its offset
is its rank among the records sent to that partition.

Each check prints nothing and exits 0 when it holds, else prints the one-line reason and exits 1.
"""

import argparse
import random
import string
import sys


def murmur2(data):
    """Kafka's Utils.murmur2 (32-bit, seed 0x9747b28c), as a signed 32-bit int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key, partitions):
    """The partition the Java producer's default partitioner picks for a non-null key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Failed(Exception):
    pass


def expect(condition, reason):
    if not condition:
        raise Failed(reason)


def read_sent(path):
    """The `key<TAB>value` lines sent, as (key, value) pairs in send order."""
    with open(path, encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]


def read_got(path):
    """ConsoleConsumer's lines as dicts with timestamp, partition, offset, key and value."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.startswith("CreateTime:"):
                continue
            fields = line.split("\t", 4)
            if len(fields) != 5:
                raise Failed(f"unparsable consumer line {line[:120]!r}")
            ts, part, off, key, value = fields
            records.append(
                {
                    "timestamp": int(ts.split(":", 1)[1]),
                    "partition": int(part.split(":", 1)[1]),
                    "offset": int(off.split(":", 1)[1]),
                    "key": key,
                    "value": value,
                }
            )
    return records


def show(text):
    return repr(text) if len(text) <= 40 else f"{len(text)} bytes"


# --- generators -------------------------------------------------------------------------


def cmd_lines(args):
    """COUNT `key<TAB>value` lines: keys k-<prefix><i> (or, with --partition P --of N, keys the
    default partitioner sends to partition P of N), values v-<prefix><i>."""
    for i in range(args.count):
        key = f"k-{args.prefix}{i}"
        if args.partition is not None:
            salt = 0
            while partition_of(f"{key}-{salt}", args.of) != args.partition:
                salt += 1
            key = f"{key}-{salt}"
        print(f"{key}\tv-{args.prefix}{i}")


def cmd_random_line(args):
    """One `key<TAB>value` line (key omitted with --no-key) whose value is SIZE random ASCII
    letters and digits (ConsoleProducer reads text lines: arbitrary bytes are not expressible)."""
    rng = random.SystemRandom()
    value = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(args.size))
    print(value if args.no_key else f"large\t{value}")


# --- checks -----------------------------------------------------------------------------


def cmd_roundtrip(args):
    """Every sent record read back once: at the partition its key hashes to, per partition in
    send order at offsets 0.., with its key and value (--values-only: values per partition)."""
    sent, got = read_sent(args.sent), read_got(args.got)
    want, have = {}, {}
    for key, value in sent:
        want.setdefault(partition_of(key, args.partitions), []).append((key, value))
    for r in got:
        have.setdefault(r["partition"], []).append(r)
    counts = lambda d: {p: len(v) for p, v in sorted(d.items())}
    expect(
        len(got) == len(sent),
        f"read {len(got)} records, sent {len(sent)} (per partition read {counts(have)}, expected {counts(want)})",
    )
    for partition, records in sorted(want.items()):
        read = have.get(partition, [])
        expect(
            len(read) == len(records),
            f"partition {partition}: read {len(read)} records, expected {len(records)} (read per partition {counts(have)})",
        )
        for i, ((key, value), r) in enumerate(zip(records, read)):
            at = f"partition {partition} record {i} (offset {r['offset']})"
            expect(r["value"] == value, f"{at}: value {show(r['value'])}, sent {show(value)}")
            if not args.values_only:
                expect(r["offset"] == i, f"{at}: expected offset {i}")
                expect(r["key"] == key, f"{at}: key {show(r['key'])}, sent {show(key)}")


def cmd_range(args):
    """GOT is exactly offsets FIRST.. of partition 0, with the values of SENT from index FIRST
    (SENT may be shorter than the log: --base is the offset of SENT's first line)."""
    sent, got = read_sent(args.sent), read_got(args.got)
    expected = [(args.base + i, value) for i, (_, value) in enumerate(sent) if args.base + i >= args.first]
    first = f"; first offset read {got[0]['offset']}" if got else ""
    expect(
        len(got) == len(expected),
        f"read {len(got)} records, expected {len(expected)} (offsets {args.first}..{args.base + len(sent) - 1}){first}",
    )
    for r, (offset, value) in zip(got, expected):
        expect(
            r["partition"] == 0 and r["offset"] == offset,
            f"read partition {r['partition']} offset {r['offset']}, expected partition 0 offset {offset}",
        )
        expect(r["value"] == value, f"offset {offset}: value {show(r['value'])}, sent {show(value)}")
        if args.min_timestamp is not None:
            expect(
                r["timestamp"] >= args.min_timestamp,
                f"offset {offset}: timestamp {r['timestamp']} is before T1={args.min_timestamp}",
            )


def parse_members(path):
    """ConsumerGroupCommand --describe --members --verbose: {client-id: set of partitions}."""
    members = {}
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip()]
    header = next((cols for cols in lines if "CLIENT-ID" in cols), None)
    if header is None:
        return members
    client, assignment = header.index("CLIENT-ID"), header.index("CURRENT-ASSIGNMENT")
    for cols in lines:
        if cols is header or len(cols) <= assignment:
            continue
        parts = set()
        for topic_parts in cols[assignment].split(";"):
            if ":" in topic_parts:
                parts |= {int(p) for p in topic_parts.rsplit(":", 1)[1].split(",") if p}
        members[cols[client]] = parts
    return members


def cmd_members(args):
    """The group has exactly the given members (client ids), each with ≥ 1 partition, the
    partitions disjoint and all of 0..PARTITIONS-1 covered. Prints `client p,p,...` lines."""
    members = parse_members(args.describe)
    expect(sorted(members) == sorted(args.clients), f"group members {members or 'none'}, expected {args.clients}")
    owned = [p for parts in members.values() for p in parts]
    expect(
        all(members.values()) and sorted(owned) == list(range(args.partitions)),
        f"assignment {members}: expected every member ≥ 1 partition, disjoint, all {args.partitions} covered",
    )
    with open(args.out, "w", encoding="utf-8") as f:
        for client, parts in sorted(members.items()):
            f.write(f"{client} {','.join(map(str, sorted(parts)))}\n")


def cmd_owners(args):
    """Each consumer's output (FILE=CLIENT pairs) holds only records of its partitions (as in
    the members file), every value of SENT consumed exactly once in total, nothing else; with
    --skip CLIENT=N the first N lines of that consumer's output are ignored."""
    owners = {}
    with open(args.members, encoding="utf-8") as f:
        for line in f:
            client, parts = line.split()
            owners[client] = {int(p) for p in parts.split(",")}
    skip = dict(s.split("=") for s in args.skip)
    want = {value for _, value in read_sent(args.sent)}
    seen = {}
    for pair in args.outputs:
        path, client = pair.split("=")
        for r in read_got(path)[int(skip.get(client, 0)) :]:
            expect(
                r["partition"] in owners[client],
                f"{client} consumed {show(r['value'])} of partition {r['partition']}, it owns {sorted(owners[client])}",
            )
            seen[r["value"]] = seen.get(r["value"], 0) + 1
    twice = [v for v, n in seen.items() if n > 1]
    expect(not twice, f"{show(twice[0]) if twice else ''} consumed {seen.get(twice[0], 0) if twice else 0} times")
    extra = sorted(set(seen) - want)
    expect(not extra, f"consumed {show(extra[0]) if extra else ''}, which is not among the {len(want)} records produced")
    expect(len(seen) == len(want), f"consumed {len(seen)} of the {len(want)} records produced")


def cmd_partition_of(args):
    """Prints the partition of each KEY (the default partitioner, N partitions)."""
    for key in args.keys:
        print(partition_of(key, args.of))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lines")
    p.add_argument("count", type=int)
    p.add_argument("--prefix", default="")
    p.add_argument("--partition", type=int)
    p.add_argument("--of", type=int, default=3)
    p.set_defaults(run=cmd_lines)
    p = sub.add_parser("random-line")
    p.add_argument("size", type=int)
    p.add_argument("--no-key", action="store_true")
    p.set_defaults(run=cmd_random_line)
    p = sub.add_parser("roundtrip")
    p.add_argument("sent")
    p.add_argument("got")
    p.add_argument("partitions", type=int)
    p.add_argument("--values-only", action="store_true")
    p.set_defaults(run=cmd_roundtrip)
    p = sub.add_parser("range")
    p.add_argument("sent")
    p.add_argument("got")
    p.add_argument("first", type=int)
    p.add_argument("--base", type=int, default=0)
    p.add_argument("--min-timestamp", type=int)
    p.set_defaults(run=cmd_range)
    p = sub.add_parser("members")
    p.add_argument("describe")
    p.add_argument("partitions", type=int)
    p.add_argument("out")
    p.add_argument("clients", nargs="+")
    p.set_defaults(run=cmd_members)
    p = sub.add_parser("owners")
    p.add_argument("members")
    p.add_argument("sent")
    p.add_argument("outputs", nargs="+", metavar="FILE=CLIENT")
    p.add_argument("--skip", action="append", default=[], metavar="CLIENT=N")
    p.set_defaults(run=cmd_owners)
    p = sub.add_parser("partition-of")
    p.add_argument("of", type=int)
    p.add_argument("keys", nargs="+")
    p.set_defaults(run=cmd_partition_of)
    args = parser.parse_args()
    try:
        args.run(args)
    except Failed as e:
        print(str(e).replace("\n", " "))
        sys.exit(1)


if __name__ == "__main__":
    main()
