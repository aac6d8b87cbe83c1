"""Test records for kcat, and the check of what kcat read back.

  records.py gen FILE COUNT SEED
      FILE: COUNT records 'key 0x1f value 0x1e' for `kcat -P -K '\\x1f' -D '\\x1e' -l FILE`.
      Values are binary (every byte but the two delimiters; newlines and NULs included),
      half of them compressible; keys are unique.
  records.py check INPUT DR CONSUMED PARTITION HEADERS [FIRST]
      INPUT: the file produced; DR: kcat -P -vvv stderr ('Message delivered to partition P
      (offset O)', one per record, in produce order); CONSUMED: kcat -C output with the format
      FORMAT below; HEADERS: the headers as kcat prints them ('a=b,c=d'); FIRST: compare only
      records FIRST.. of INPUT (default 0). Every compared record must have been acknowledged
      on PARTITION and read back at that offset, byte-identical, with those headers, in order.
      CONSUMED must hold nothing else.
Prints the reason and exits 1 on a mismatch.
"""

import random
import re
import sys

FORMAT = "%p %o %T %K %S %h\\n%k%s\\n"  # the kcat -f argument (kcat expands the \n itself)
KEY_DELIM, MSG_DELIM = b"\x1f", b"\x1e"


def gen(path, count, seed):
    rng = random.Random(int(seed))
    alphabet = bytes(b for b in range(256) if b not in KEY_DELIM + MSG_DELIM)
    with open(path, "wb") as f:
        for i in range(int(count)):
            key = f"key-{seed}-{i}".encode()
            if i % 2:
                value = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 2000)))
            else:
                value = (f"value {i} of seed {seed}, " * rng.randint(1, 80)).encode()
            f.write(key + KEY_DELIM + value + MSG_DELIM)


def read_input(path):
    with open(path, "rb") as f:
        parts = f.read().split(MSG_DELIM)
    return [tuple(p.split(KEY_DELIM, 1)) for p in parts if p]


def read_dr(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    return [(int(p), int(o)) for p, o in re.findall(r"Message delivered to partition (-?\d+) \(offset (-?\d+)\)", text)]


def read_consumed(path):
    """[(partition, offset, key, value, headers)] from kcat -C -f FORMAT output."""
    out, pos = [], 0
    data = open(path, "rb").read()
    while pos < len(data):
        nl = data.index(b"\n", pos)
        fields = data[pos:nl].decode().split(" ", 5)
        p, o, _ts, klen, vlen = (int(x) for x in fields[:5])
        headers = fields[5] if len(fields) > 5 else ""
        pos = nl + 1
        key = data[pos : pos + max(klen, 0)]
        pos += max(klen, 0)
        value = data[pos : pos + max(vlen, 0)]
        pos += max(vlen, 0)
        if data[pos : pos + 1] != b"\n":
            raise ValueError(f"consumed output malformed at byte {pos}")
        pos += 1
        out.append((p, o, key if klen >= 0 else None, value if vlen >= 0 else None, headers))
    return out


def check(input_path, dr_path, consumed_path, partition, headers, first=0):
    partition, first = int(partition), int(first)
    records = read_input(input_path)
    acks = read_dr(dr_path)
    if len(acks) != len(records):
        return f"{len(acks)} delivery reports for {len(records)} records"
    if any(p != partition for p, _ in acks):
        return f"records acknowledged on partitions {sorted({p for p, _ in acks})}, expected {partition}"
    offsets = [o for _, o in acks]
    if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
        return f"acknowledged offsets not contiguous: {offsets[:5]}..."
    consumed = read_consumed(consumed_path)
    expected = [
        (partition, off, key, value, headers)
        for off, (key, value) in list(zip(offsets, records))[first:]
    ]
    if consumed == expected:
        return None
    if len(consumed) != len(expected):
        where = [(c[0], c[1]) for c in consumed[:3]]
        return f"read {len(consumed)} records, expected {len(expected)} (first read: {where}, first expected offset {expected[0][1] if expected else None})"
    for c, e in zip(consumed, expected):
        if c != e:
            what = [n for n, a, b in zip(("partition", "offset", "key", "value", "headers"), c, e) if a != b]
            return f"record at offset {e[1]}: {', '.join(what)} differ (read p{c[0]}@{c[1]} key={c[2][:30]!r})"
    return "mismatch"


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen":
        gen(*args)
        return 0
    if cmd == "check":
        try:
            failure = check(*args)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure:
            print(failure)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
