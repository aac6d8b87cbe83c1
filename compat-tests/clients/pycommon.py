"""Shared by the Python client families (confluent-kafka, kafka-python): the scenario driver,
unique names, deadlines, the test records and the round-trip checks. Nothing here talks to
a broker; each family's scenarios.py does that with its own client.

The driver (main) follows ../CONTRACT.md: `scenarios.py BOOTSTRAP [SCENARIO...]` runs each
scenario in a child process of its own (`scenarios.py --one BOOTSTRAP SCENARIO`), so a client
that hangs (a blocked close, a stuck background thread) is killed at 90 s and can never
hold up the next scenario, and prints exactly one PASS / FAIL / N/A line per scenario on
stdout. Everything else, the clients' logs included, goes to stderr.
"""

import logging
import os
import random
import signal
import subprocess
import sys
import time

SCENARIO_LIMIT_S = 90  # the contract's bound, enforced from the parent
BUDGET_S = 80  # what a scenario plans with, so it can fail with its own reason first
SETTLE_S = 1.0  # after the expected records arrived, how long to keep polling for extras


class Failure(Exception):
    """The scenario failed; the message is the one-line reason."""


class NotApplicable(Exception):
    """The client has no API or option for the scenario; the message says why."""


def one_line(text, limit=400):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- a scenario


class Context:
    """What a scenario function gets: the broker, unique names and its deadline."""

    def __init__(self, family, scenario, bootstrap):
        self.family, self.scenario, self.bootstrap = family, scenario, bootstrap
        # Time, pid and randomness: a long-lived broker never sees a name twice.
        self.suffix = f"{int(time.time())}-{os.getpid()}-{random.randrange(1 << 24):06x}"
        self.deadline = time.monotonic() + BUDGET_S

    def name(self, tag=""):
        """compat-<family>-<scenario>-<suffix>[-tag], for topics and groups."""
        return f"compat-{self.family}-{self.scenario}-{self.suffix}{'-' + tag if tag else ''}"

    def remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0.5:
            raise Failure(f"ran out of the scenario's {BUDGET_S} s budget")
        return left

    def timeout(self, seconds):
        """seconds, capped by what is left of the budget (for a single blocking call)."""
        return max(0.5, min(seconds, self.remaining()))

    def log(self, message):
        print(f"[{self.family}] {self.scenario}: {message}", file=sys.stderr, flush=True)

    def wait_until(self, seconds, condition, interval=0.2):
        """Calls condition() until it returns a true value (returned) or `seconds` pass
        (None returned)."""
        end = time.monotonic() + self.timeout(seconds)
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() >= end:
                return None
            time.sleep(interval)


# ---------------------------------------------------------------------------- records


class Sent:
    """A record as produced; partition and offset come from the producer's acknowledgement
    (None until then, or when the client reports none)."""

    __slots__ = ("key", "value", "headers", "timestamp", "partition", "offset")

    def __init__(self, key, value, headers=None, timestamp=None, partition=None):
        self.key, self.value, self.headers = key, value, list(headers or [])
        self.timestamp, self.partition, self.offset = timestamp, partition, None


class Got:
    """A record as consumed (headers as a list of (str, bytes or None))."""

    __slots__ = ("partition", "offset", "key", "value", "headers", "timestamp")

    def __init__(self, partition, offset, key, value, headers, timestamp=None):
        self.partition, self.offset, self.key, self.value = partition, offset, key, value
        self.headers = [(k, v) for k, v in (headers or [])]
        self.timestamp = timestamp

    def __repr__(self):
        return f"{self.partition}@{self.offset}"


def numbered(count, headers=False, value_pad=0):
    """Keys k-<i>, values v-<i> (padded with compressible text when value_pad > 0, so a
    codec has something to do), optionally one header each."""
    records = []
    for i in range(count):
        value = f"v-{i}".encode() + (b" " + b"compressible text " * value_pad if value_pad else b"")
        hdrs = [("i", str(i).encode()), ("bin", bytes([0, 255, i % 256]))] if headers else []
        records.append(Sent(f"k-{i}".encode(), value, hdrs))
    return records


def binary_records(count=60):
    """keys-headers-nulls: binary keys that between them hold all 256 byte values, every
    10th key null (i % 10 == 3), every 10th value null (i % 10 == 7), and two headers
    each: the key 'h' twice, the first with an empty value."""
    records, next_byte = [], 0
    for i in range(count):
        key = None
        if i % 10 != 3:
            key = bytes((next_byte + j) % 256 for j in range(8)) + bytes([i])
            next_byte += 8
        value = None if i % 10 == 7 else bytes(random.getrandbits(8) for _ in range(1 + i * 7))
        headers = [("h", b""), ("h", bytes([i, 0, 255]) + b"\n\r")]
        records.append(Sent(key, value, headers))
    covered = {b for r in records if r.key is not None for b in r.key}
    assert len(covered) == 256, "binary_records must cover every byte value"
    return records


def describe(data):
    if data is None:
        return "null"
    return f"{len(data)} bytes {data[:12]!r}{'...' if len(data) > 12 else ''}"


# ---------------------------------------------------------------------------- checks


def check_no_duplicates_in_order(got):
    """Each (partition, offset) read once, offsets increasing within a partition."""
    last = {}
    for g in got:
        if g.offset <= last.get(g.partition, -1):
            raise Failure(f"partition {g.partition}: offset {g.offset} read after {last[g.partition]} "
                          "(duplicate or out of order)")
        last[g.partition] = g.offset


def check_round_trip(sent, got, headers_null_as_empty=False):
    """The contract's full round trip: every acknowledged record read back once, at the
    partition and offset of its acknowledgement, with its key, value and headers, and the
    acknowledged offsets follow the send order within each partition."""
    check_acks_in_send_order(sent)
    check_no_duplicates_in_order(got)
    at = {(g.partition, g.offset): g for g in got}
    for i, s in enumerate(sent):
        g = at.get((s.partition, s.offset))
        if g is None:
            raise Failure(f"read {len(got)} of {len(sent)} records; record {i} "
                          f"(acknowledged at {s.partition}@{s.offset}) was not read")
        compare(i, s, g, headers_null_as_empty)
    if len(got) != len(sent):
        acknowledged = {(s.partition, s.offset) for s in sent}
        extra = [g for g in got if (g.partition, g.offset) not in acknowledged]
        raise Failure(f"read {len(got)} records, sent {len(sent)}; unexpected: {extra[:5]}")


def check_acks_in_send_order(sent):
    last = {}
    for i, s in enumerate(sent):
        if s.partition is None or s.offset is None or s.offset < 0:
            raise Failure(f"record {i} has no acknowledged partition/offset ({s.partition}, {s.offset})")
        if s.offset <= last.get(s.partition, -1):
            raise Failure(f"record {i} acknowledged at {s.partition}@{s.offset}, not after the "
                          f"previous record of that partition ({last[s.partition]})")
        last[s.partition] = s.offset


def compare(i, s, g, headers_null_as_empty=False):
    where = f"record {i} at {g.partition}@{g.offset}"
    if g.key != s.key:
        raise Failure(f"{where}: key sent {describe(s.key)}, read {describe(g.key)}")
    if g.value != s.value:
        raise Failure(f"{where}: value sent {describe(s.value)}, read {describe(g.value)}")
    want = [(k, v) for k, v in s.headers]
    have = g.headers
    if headers_null_as_empty:
        have = [(k, b"" if v is None else v) for k, v in have]
    if have != want:
        raise Failure(f"{where}: headers sent {want!r}, read {g.headers!r}")
    if s.timestamp is not None and g.timestamp is not None and g.timestamp != s.timestamp:
        raise Failure(f"{where}: timestamp sent {s.timestamp}, read {g.timestamp}")


def check_values_only(sent, got):
    """acks=0 has no acknowledgement: exactly the values sent, once each, and within each
    partition in send order."""
    index = {s.value: i for i, s in enumerate(sent)}
    seen, last = set(), {}
    for g in got:
        i = index.get(g.value)
        if i is None:
            raise Failure(f"read a value that was not sent at {g!r}: {describe(g.value)}")
        if i in seen:
            raise Failure(f"record {i} read twice (again at {g!r})")
        if i < last.get(g.partition, -1):
            raise Failure(f"partition {g.partition}: record {i} read after record {last[g.partition]} "
                          "(not in send order)")
        seen.add(i)
        last[g.partition] = i
    if len(seen) != len(sent):
        missing = sorted(set(range(len(sent))) - seen)
        raise Failure(f"read {len(seen)} of {len(sent)} records; missing e.g. {missing[:10]}")


def check_offsets(got, partition, first, sent):
    """Exactly the records sent[first:], at offsets first.. of `partition` (records that were
    produced to an empty partition, so record i sits at offset i)."""
    want = list(range(first, len(sent)))
    offsets = [g.offset for g in got]
    if offsets != want:
        raise Failure(f"expected offsets {first}..{len(sent) - 1} of partition {partition}, "
                      f"read {summarize(offsets)}")
    for g in got:
        if g.partition != partition:
            raise Failure(f"read a record from partition {g.partition}, assigned only {partition}")
        compare(g.offset, sent[g.offset], g)


def summarize(offsets):
    """'n offsets: a..b' or a short list, for reasons."""
    if not offsets:
        return "nothing"
    if offsets == list(range(offsets[0], offsets[0] + len(offsets))):
        return f"{len(offsets)} offsets {offsets[0]}..{offsets[-1]}"
    return f"{len(offsets)} offsets {offsets[:8]}{'...' if len(offsets) > 8 else ''}"


# ---------------------------------------------------------------------------- the driver


def main(family, scenarios, argv=None):
    """scenarios: ordered {name: function(Context)}; a function returns on success and
    raises Failure / NotApplicable otherwise.

    usage: scenarios.py --list | BOOTSTRAP [SCENARIO...] | --one BOOTSTRAP SCENARIO"""
    argv = sys.argv[1:] if argv is None else argv
    debug = bool(os.environ.get("COMPAT_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format=f"[{family}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv == ["--list"]:
        print("\n".join(scenarios))
        return 0
    if len(argv) == 3 and argv[0] == "--one":
        print(run_one(family, scenarios, argv[1], argv[2]), flush=True)
        return 0
    if not argv or argv[0].startswith("-"):
        print(f"usage: {sys.argv[0]} BOOTSTRAP [SCENARIO...] | --list", file=sys.stderr)
        return 2
    bootstrap, chosen = argv[0], argv[1:] or list(scenarios)
    for scenario in chosen:
        print(run_child(family, bootstrap, scenario), flush=True)
    return 0


def run_one(family, scenarios, bootstrap, scenario):
    """In the child: runs one scenario, returns its result line."""
    function = scenarios.get(scenario)
    if function is None:
        return f"FAIL {scenario}: no such scenario (known: {', '.join(scenarios)})"
    ctx = Context(family, scenario, bootstrap)
    try:
        function(ctx)
    except Failure as failure:
        return f"FAIL {scenario}: {one_line(failure)}"
    except NotApplicable as reason:
        return f"N/A {scenario}: {one_line(reason)}"
    except Exception as error:  # an unexpected client exception is a failure, with its text
        import traceback

        traceback.print_exc(file=sys.stderr)
        text = one_line(error)
        # Some clients (kafka-python) already start the text with the exception's name.
        if not text.startswith(type(error).__name__):
            text = f"{type(error).__name__}: {text}"
        return f"FAIL {scenario}: {text}"
    return f"PASS {scenario}"


def run_child(family, bootstrap, scenario):
    """In the parent: one child per scenario, killed (with its process group) at the
    contract's 90 s; its first result line, or a FAIL saying why there was none."""
    started = time.monotonic()
    command = [sys.executable, os.path.abspath(sys.argv[0]), "--one", bootstrap, scenario]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             start_new_session=True)
    try:
        out, _ = child.communicate(timeout=SCENARIO_LIMIT_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
        timed_out = True
    print(f"[{family}] {scenario}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    lines = [line for line in out.decode("utf-8", "replace").splitlines()
             if line.split(" ", 1)[0] in ("PASS", "FAIL", "N/A")]
    if timed_out:
        return f"FAIL {scenario}: did not finish within {SCENARIO_LIMIT_S} s"
    if not lines:
        return f"FAIL {scenario}: the scenario process exited {child.returncode} without a result (see stderr)"
    return lines[0]
