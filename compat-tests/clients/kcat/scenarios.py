#!/usr/bin/env python3
"""The kcat family's scenarios (see ../CONTRACT.md): every Kafka request is made by kcat
(Debian's kcat 1.7.1 on librdkafka 2.0.2); python only generates the records, runs kcat and
checks what it printed.

usage: scenarios.py BOOTSTRAP SCENARIO
Prints exactly one line on stdout: 'PASS s', 'FAIL s: reason' or 'N/A s: reason'.
Diagnostics (every kcat command line, kcat's stderr when it mattered) go to stderr.

kcat has no admin API, so topics are created by auto-creation (`kcat -L -t T` asks the
broker to create T) with the broker's num.partitions, and checks adapt to that count.
Records are fed to `kcat -P -l FILE` split by multi-byte delimiters (so keys and values may
hold every byte value), produced with -Z (an empty key or value is sent as NULL), and read
back with `kcat -C -f FORMAT`, which prints key and value lengths (-1 for NULL) before the
raw bytes. Acknowledgements are kcat's delivery reports ('Message delivered to partition P
(offset O)' on stderr with -vvv), which come in send order within a partition; a keyed
record's partition is predicted with librdkafka's consistent partitioner (CRC32 of the key),
set explicitly, so each report can be matched to its record.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

BUDGET_S = 85  # the contract bounds a scenario at 90 s; ./run enforces that from outside too
KEY_DELIM, MSG_DELIM = b"\xfb|KD|\xfc", b"\xfe|MD|\xfd"
KEY_DELIM_ARG, MSG_DELIM_ARG = r"\xfb|KD|\xfc", r"\xfe|MD|\xfd"
# Header line 'topic partition offset timestamp keylen valuelen headers', then key and value.
FORMAT = r"%t %p %o %T %K %S %h\n%k%s\n"
DELIVERED = re.compile(r"Message delivered to partition (-?\d+) \(offset (-?\d+)\)")
DELIVERY_FAILED = re.compile(r"Delivery failed for message: (.*)")


class Failure(Exception):
    """The scenario failed; the message is the one-line reason."""


class NotApplicable(Exception):
    """kcat cannot express the scenario; the message says why."""


def log(message):
    print(f"[kcat] {message}", file=sys.stderr, flush=True)


def one_line(text, limit=400):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Record:
    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, topic, partition, offset, timestamp, key, value, headers):
        self.topic, self.partition, self.offset = topic, partition, offset
        self.timestamp, self.key, self.value, self.headers = timestamp, key, value, headers

    def __repr__(self):
        return f"{self.topic}[{self.partition}]@{self.offset}"


def parse_consumed(data):
    """Records from `kcat -C -f FORMAT` output."""
    out, pos = [], 0
    while pos < len(data):
        newline = data.index(b"\n", pos)
        fields = data[pos:newline].decode("utf-8", "replace").split(" ", 6)
        topic = fields[0]
        partition, offset, timestamp, key_len, value_len = (int(x) for x in fields[1:6])
        headers = fields[6] if len(fields) > 6 else ""
        pos = newline + 1
        key = data[pos : pos + key_len] if key_len >= 0 else None
        pos += max(key_len, 0)
        value = data[pos : pos + value_len] if value_len >= 0 else None
        pos += max(value_len, 0)
        if data[pos : pos + 1] != b"\n":
            raise Failure(f"kcat's consumer output is malformed at byte {pos}")
        pos += 1
        out.append(Record(topic, partition, offset, timestamp, key, value, headers))
    return out


def parse_assignment(stderr_text):
    """The member's current partitions {(topic, partition)}, from kcat -G's last rebalance
    message ('% Group G rebalanced (memberid M): assigned: T [0], T [3]' or 'revoked: ...')."""
    current = set()
    for line in stderr_text.splitlines():
        if "rebalanced" not in line:
            continue
        if ": assigned: " in line:
            listed = line.split(": assigned: ", 1)[1]
            current = {(t, int(p)) for t, p in re.findall(r"(\S+) \[(\d+)\]", listed)}
        elif ": revoked: " in line:
            current = set()
    return current


class Scenario:
    def __init__(self, bootstrap, name, work):
        self.bootstrap, self.name, self.work = bootstrap, name, work
        self.suffix = f"{int(time.time())}-{os.getpid()}-{random.randrange(1 << 30):x}"
        self.deadline = time.monotonic() + BUDGET_S
        self.children = []
        self.files = 0

    # --- plumbing -----------------------------------------------------------------------

    def topic(self, tag=""):
        return f"compat-kcat-{self.name}-{self.suffix}{tag}"

    def remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 1:
            raise Failure(f"the scenario ran out of its {BUDGET_S} s budget")
        return left

    def path(self, what):
        self.files += 1
        return os.path.join(self.work, f"{self.files:03d}-{what}")

    def kcat(self, args, timeout=30, check=True):
        """Runs kcat; (stdout bytes, stderr text, exit code)."""
        command = ["kcat", "-b", self.bootstrap, *args]
        log(" ".join(command))
        limit = min(timeout, self.remaining())
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=limit
            )
        except subprocess.TimeoutExpired as expired:
            raise Failure(
                f"kcat {' '.join(args[:3])}... did not finish within {limit:.0f} s: "
                f"{one_line((expired.stderr or b'').decode('utf-8', 'replace')[-300:])}"
            ) from None
        stderr = done.stderr.decode("utf-8", "replace")
        if check and done.returncode != 0:
            log(stderr)
            raise Failure(f"kcat {' '.join(args[:3])}... exited {done.returncode}: {one_line(stderr[-300:])}")
        return done.stdout, stderr, done.returncode

    def spawn(self, args, name):
        """Starts kcat in the background; its stdout and stderr go to files."""
        out_path, err_path = self.path(f"{name}.out"), self.path(f"{name}.err")
        command = ["kcat", "-b", self.bootstrap, *args]
        log(" ".join(command) + " &")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.children.append(child)
        return child, out_path, err_path

    def stop_children(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()

    def wait_for(self, seconds, condition):
        """Polls condition every 0.1 s until it is true; False after `seconds`."""
        end = time.monotonic() + min(seconds, self.remaining())
        while True:
            if condition():
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.1)

    # --- kcat operations ------------------------------------------------------------------

    def metadata(self, topic=None, auto_create=False):
        args = ["-L", "-J", "-m", "10"]
        if topic is not None:
            args += ["-t", topic]
        args += ["-X", f"allow.auto.create.topics={'true' if auto_create else 'false'}"]
        stdout, _, _ = self.kcat(args)
        try:
            return json.loads(stdout)
        except ValueError as error:
            raise Failure(f"kcat -L -J printed no JSON ({error}): {one_line(stdout[:200])}") from None

    def create_topic(self, topic):
        """Creates topic by auto-creation; its partition count once every partition has a
        leader."""
        self.metadata(topic, auto_create=True)
        last = {}

        def ready():
            nonlocal last
            listed = self.metadata(topic)["topics"]
            last = listed[0] if listed else {}
            partitions = last.get("partitions") or []
            return not last.get("error") and partitions and all(p["leader"] >= 0 for p in partitions)

        if not self.wait_for(15, ready):
            raise Failure(f"auto-created topic {topic} has no leaders after 15 s: {one_line(json.dumps(last))}")
        count = len(last["partitions"])
        log(f"topic {topic} auto-created with {count} partitions")
        return count

    def produce(self, topic, records, partition=None, extra=(), headers=()):
        """Sends records [(key, value)] (None: NULL) in one kcat -P call; partition None
        uses the consistent partitioner (keys required). Returns the delivery reports
        [(partition, offset)] in report order and the delivery errors."""
        data = bytearray()
        for key, value in records:
            for part in (key, value):
                if part is not None and (part == b"" or KEY_DELIM in part or MSG_DELIM in part):
                    raise Failure(f"test bug: record part {part[:20]!r} cannot be sent through -l")
            data += (key or b"") + KEY_DELIM + (value or b"") + MSG_DELIM
        input_path = self.path("produce.in")
        with open(input_path, "wb") as handle:
            handle.write(data)
        args = ["-P", "-t", topic, "-K", KEY_DELIM_ARG, "-D", MSG_DELIM_ARG, "-Z", "-l", input_path]
        args += ["-p", str(partition)] if partition is not None else ["-X", "partitioner=consistent"]
        for header in headers:
            args += ["-H", header]
        args += ["-m", "10", "-vvv", *extra]
        _, stderr, _ = self.kcat(args, timeout=60, check=False)
        reports = [(int(p), int(o)) for p, o in DELIVERED.findall(stderr)]
        errors = DELIVERY_FAILED.findall(stderr)
        return reports, errors

    def produce_file(self, topic, path, partition, extra=()):
        """Sends the whole file as one record with no key; (reports, errors)."""
        args = ["-P", "-t", topic, "-p", str(partition), "-m", "10", "-vvv", *extra, path]
        _, stderr, _ = self.kcat(args, timeout=60, check=False)
        return [(int(p), int(o)) for p, o in DELIVERED.findall(stderr)], DELIVERY_FAILED.findall(stderr)

    def consume(self, topic, partition=None, offset="beginning", extra=()):
        """Reads from offset to the end (-e) of one partition or of all; the records."""
        args = ["-C", "-t", topic, "-o", str(offset), "-e", "-f", FORMAT, "-m", "10", *extra]
        if partition is not None:
            args += ["-p", str(partition)]
        stdout, _, _ = self.kcat(args, timeout=60)
        return parse_consumed(stdout)

    # --- checks ---------------------------------------------------------------------------

    def acknowledged(self, records, partitions, reports, errors, explicit=None):
        """Matches delivery reports to records: {(partition, offset): record index}.
        explicit: the partition every record was sent to; else the consistent partitioner's
        choice, CRC32(key) % partitions."""
        if errors:
            raise Failure(f"{len(errors)} deliveries failed, first: {errors[0]}")
        if len(reports) != len(records):
            raise Failure(f"{len(reports)} delivery reports for {len(records)} records")
        expected = {}
        for index, (key, _) in enumerate(records):
            partition = explicit if explicit is not None else zlib.crc32(key) % partitions
            expected.setdefault(partition, []).append(index)
        reported = {}
        for partition, offset in reports:
            reported.setdefault(partition, []).append(offset)
        placed = {}
        for partition, indexes in expected.items():
            offsets = reported.get(partition, [])
            if len(offsets) != len(indexes):
                raise Failure(
                    f"partition {partition}: {len(offsets)} delivery reports, expected {len(indexes)} "
                    f"(CRC32 partitioning predicted {sorted((p, len(i)) for p, i in expected.items())}, "
                    f"reports per partition {sorted((p, len(o)) for p, o in reported.items())})"
                )
            if any(b <= a for a, b in zip(offsets, offsets[1:])):
                raise Failure(f"partition {partition}: acknowledged offsets not increasing: {offsets[:8]}")
            for index, offset in zip(indexes, offsets):
                placed[(partition, offset)] = index
        return placed

    @staticmethod
    def round_trip(records, placed, consumed, headers):
        """Every record read back once at its acknowledged partition and offset, with its
        key, value and headers (kcat's %h text), and nothing else."""
        seen = set()
        for record in consumed:
            where = (record.partition, record.offset)
            if where not in placed:
                raise Failure(f"read {record} which was never acknowledged (key {record.key!r:.40})")
            if where in seen:
                raise Failure(f"read {record} twice")
            seen.add(where)
            key, value = records[placed[where]]
            if record.key != key:
                raise Failure(f"{record}: key {record.key!r:.60}, sent {key!r:.60}")
            if record.value != value:
                raise Failure(
                    f"{record}: value differs ({None if record.value is None else len(record.value)} bytes "
                    f"read, {None if value is None else len(value)} sent)"
                )
            if record.headers != headers:
                raise Failure(f"{record}: headers {record.headers!r}, sent {headers!r}")
        if len(seen) != len(placed):
            missing = sorted(set(placed) - seen)
            raise Failure(f"read {len(seen)} of {len(placed)} acknowledged records; first missing at {missing[:3]}")

    @staticmethod
    def in_send_order(consumed, index_of):
        """Within each partition the records come in send order (index_of: record → index)."""
        last = {}
        for record in consumed:
            index = index_of(record)
            if record.partition in last and index <= last[record.partition]:
                raise Failure(f"partition {record.partition}: record #{index} read after #{last[record.partition]}")
            last[record.partition] = index

    # --- scenarios ------------------------------------------------------------------------

    def s_metadata(self):
        cluster = self.metadata()
        brokers = cluster.get("brokers") or []
        if not brokers:
            raise Failure(f"kcat -L lists no brokers: {one_line(json.dumps(cluster)[:300])}")
        for broker in brokers:
            host, _, port = broker.get("name", "").rpartition(":")
            if not host or not port.isdigit():
                raise Failure(f"broker {broker} has no host:port")
        topic = self.topic()
        count = self.create_topic(topic)
        listed = self.metadata(topic)["topics"]
        partitions = sorted(p["partition"] for p in listed[0]["partitions"])
        if partitions != list(range(count)):
            raise Failure(f"topic {topic} lists partitions {partitions}")
        leaderless = [p["partition"] for p in listed[0]["partitions"] if p["leader"] < 0]
        if leaderless:
            raise Failure(f"partitions {leaderless} of {topic} have no leader")
        log(f"{len(brokers)} broker(s) {[b['name'] for b in brokers]}; {topic} has {count} partitions "
            "(auto-created: kcat cannot ask for 3)")

    def s_produce_acks(self, acks):
        topic = self.topic()
        partitions = self.create_topic(topic)
        records = [(b"k-%d" % i, b"v-%d" % i) for i in range(200)]
        header = f"acks={acks}"
        reports, errors = self.produce(topic, records, extra=["-X", f"acks={acks}"], headers=[header])
        consumed = self.consume(topic)
        if acks == "0":
            # No acknowledgement: compare values only.
            if errors:
                raise Failure(f"{len(errors)} sends failed, first: {errors[0]}")
            values = sorted(record.value for record in consumed)
            if values != sorted(value for _, value in records):
                raise Failure(f"read {len(consumed)} records ({len(set(values))} distinct values), sent 200")
            self.in_send_order(consumed, lambda record: int(record.value[2:]))
            return
        placed = self.acknowledged(records, partitions, reports, errors)
        self.round_trip(records, placed, consumed, header)

    def s_compression(self, codec):
        topic = self.topic()
        partitions = self.create_topic(topic)
        rng = random.Random(codec)
        records = []
        for i in range(200):
            text = (f"record {i} compressed with {codec}; " * rng.randint(1, 40)).encode()
            noise = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            records.append((b"k-%d" % i, text + noise))
        header = f"codec={codec}"
        reports, errors = self.produce(
            topic, records, extra=["-z", codec, "-X", "acks=all"], headers=[header]
        )
        placed = self.acknowledged(records, partitions, reports, errors)
        self.round_trip(records, placed, self.consume(topic), header)

    def s_keys_headers_nulls(self):
        topic = self.topic()
        partitions = self.create_topic(topic)
        rng = random.Random(60)
        records, keyed = [], 0
        for i in range(60):
            key = None
            if i % 10 != 3:
                key = bytes((keyed * 5 + j) % 256 for j in range(5))
                keyed += 1
            value = None if i % 7 == 5 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
            records.append((key, value))
        covered = {byte for key, _ in records if key for byte in key}
        if len(covered) != 256:
            raise Failure(f"test bug: keys cover {len(covered)} byte values")
        # Two headers on every record, the same key twice, the second with an empty value
        # (kcat's -H applies to every record of the call).
        headers = ["h=first", "h="]
        printed = "h=first,h="
        # Null keys are partitioned at random, so each partition gets its records explicitly.
        placed = {}
        for partition in range(partitions):
            indexes = [i for i in range(60) if i % partitions == partition]
            chunk = [records[i] for i in indexes]
            reports, errors = self.produce(topic, chunk, partition=partition, headers=headers)
            for (where, index) in self.acknowledged(chunk, partitions, reports, errors, explicit=partition).items():
                placed[where] = indexes[index]
        self.round_trip(records, placed, self.consume(topic), printed)

    def s_large_message(self):
        topic = self.topic()
        self.create_topic(topic)
        value = os.urandom(900_000)
        path = self.path("large.bin")
        with open(path, "wb") as handle:
            handle.write(value)
        reports, errors = self.produce_file(topic, path, 0, extra=["-X", "acks=all"])
        if errors or len(reports) != 1:
            raise Failure(f"the 900,000-byte record was not acknowledged: {errors or reports}")
        consumed = self.consume(topic, 0)
        if len(consumed) != 1:
            raise Failure(f"read {len(consumed)} records from partition 0, expected 1")
        record = consumed[0]
        if (record.partition, record.offset) != reports[0]:
            raise Failure(f"read {record}, acknowledged at {reports[0]}")
        if record.value != value:
            raise Failure(f"value differs: {None if record.value is None else len(record.value)} bytes read")

    def produce_values(self, topic, count, prefix="v", partition=0):
        """count records 'prefix-i' (keys 'k-i') to one partition; their offsets."""
        records = [(b"k-%d" % i, b"%s-%d" % (prefix.encode(), i)) for i in range(count)]
        reports, errors = self.produce(topic, records, partition=partition)
        placed = self.acknowledged(records, 1, reports, errors, explicit=partition)
        return [offset for (_, offset) in sorted(placed)], records

    @staticmethod
    def expect_offsets(consumed, offsets, records, partition=0):
        got = [(r.partition, r.offset) for r in consumed]
        want = [(partition, o) for o in offsets]
        if got != want:
            raise Failure(
                f"read {len(got)} records {got[:2]}..{got[-1:]}, expected {len(want)} {want[:2]}..{want[-1:]}"
            )
        for record, (key, value) in zip(consumed, records):
            if (record.key, record.value) != (key, value):
                raise Failure(f"{record}: read {record.key!r}/{record.value!r}, sent {key!r}/{value!r}")

    def s_consume_beginning(self):
        topic = self.topic()
        self.create_topic(topic)
        offsets, records = self.produce_values(topic, 50)
        if offsets != list(range(50)):
            raise Failure(f"acknowledged offsets {offsets[:3]}..., expected 0..49")
        self.expect_offsets(self.consume(topic, 0, "beginning"), offsets, records)

    def s_consume_offset(self):
        topic = self.topic()
        self.create_topic(topic)
        offsets, records = self.produce_values(topic, 100)
        if offsets != list(range(100)):
            raise Failure(f"acknowledged offsets {offsets[:3]}..., expected 0..99")
        self.expect_offsets(self.consume(topic, 0, 40), offsets[40:], records[40:])

    def s_consume_timestamp(self):
        # kcat cannot set a record's timestamp (librdkafka stamps it when kcat produces it), so
        # the two halves are produced apart in time and T1 is taken between them.
        topic = self.topic()
        self.create_topic(topic)
        first_offsets, first = self.produce_values(topic, 50, "a")
        time.sleep(0.05)
        t1 = int(time.time() * 1000)
        time.sleep(0.05)
        second_offsets, second = self.produce_values(topic, 50, "b")
        if first_offsets + second_offsets != list(range(100)):
            raise Failure("acknowledged offsets are not 0..99")
        stdout, stderr, _ = self.kcat(["-Q", "-t", f"{topic}:0:{t1}", "-m", "10"])
        found = re.search(rb"\[0\] offset (-?\d+)", stdout)
        if not found:
            raise Failure(f"kcat -Q printed no offset: {one_line(stdout.decode('utf-8', 'replace') + stderr)}")
        if int(found.group(1)) != 50:
            raise Failure(f"offsets-for-times({t1}) returned {int(found.group(1))}, expected 50")
        self.expect_offsets(self.consume(topic, 0, f"s@{t1}"), second_offsets, second)

    def s_consume_end(self):
        topic = self.topic()
        self.create_topic(topic)
        self.produce_values(topic, 20, "old")
        child, out_path, err_path = self.spawn(
            ["-C", "-t", topic, "-p", "0", "-o", "end", "-c", "10", "-f", FORMAT, "-m", "10"], "end"
        )
        reached = f"Reached end of topic {topic} [0]"

        def positioned():
            with open(err_path, encoding="utf-8", errors="replace") as handle:
                return reached in handle.read() or child.poll() is not None

        if not self.wait_for(20, positioned) or child.poll() is not None:
            with open(err_path, encoding="utf-8", errors="replace") as handle:
                raise Failure(f"the -o end consumer was not positioned within 20 s: {one_line(handle.read()[-300:])}")
        offsets, records = self.produce_values(topic, 10, "new")
        try:
            child.wait(timeout=min(30, self.remaining()))
        except subprocess.TimeoutExpired:
            pass
        with open(out_path, "rb") as handle:
            consumed = parse_consumed(handle.read())
        if child.returncode is None:
            raise Failure(f"the -o end consumer read {len(consumed)} of the 10 new records within 30 s")
        self.expect_offsets(consumed, offsets, records)

    def s_idempotent(self):
        topic = self.topic()
        partitions = self.create_topic(topic)
        records = [(b"k-%d" % i, b"v-%d" % i) for i in range(300)]
        header = "idempotent=true"
        reports, errors = self.produce(
            topic, records, extra=["-X", "enable.idempotence=true", "-X", "acks=all"], headers=[header]
        )
        placed = self.acknowledged(records, partitions, reports, errors)
        consumed = self.consume(topic)
        self.round_trip(records, placed, consumed, header)
        self.in_send_order(consumed, lambda record: int(record.key[2:]))

    def s_group_rebalance(self):
        # kcat cannot create a 4-partition topic. With the auto-created partition count P, one
        # topic when P >= 2 (its P partitions shared); else 4 topics of 1 partition under the
        # round-robin assignor (range would give every single-partition topic to one member).
        first = self.topic("-0")
        count = self.create_topic(first)
        topics = [first]
        extra = []
        if count < 2:
            topics += [self.topic(f"-{i}") for i in range(1, 4)]
            for topic in topics[1:]:
                self.create_topic(topic)
            extra = ["-X", "partition.assignment.strategy=roundrobin"]
        everything = set()
        for topic in topics:
            listed = self.metadata(topic)["topics"][0]["partitions"]
            everything |= {(topic, p["partition"]) for p in listed}
        group = f"compat-kcat-{self.name}-{self.suffix}"

        def member(name):
            return self.spawn(
                ["-G", group, *topics, "-u", "-f", r"%t %p %o %s\n", "-m", "10",
                 "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
                 "-X", "heartbeat.interval.ms=1000", *extra],
                name,
            )

        def read(path):
            with open(path, "rb") as handle:
                return handle.read().decode("utf-8", "replace")

        def holds(err_path):
            return parse_assignment(read(err_path))

        def consumed(out_path):
            lines = [line.split(" ", 3) for line in read(out_path).splitlines() if line.count(" ") >= 3]
            return [(t, int(p), int(o), v) for t, p, o, v in lines]

        a, a_out, a_err = member("a")
        if not self.wait_for(30, lambda: holds(a_err)):
            raise Failure(f"member a got no partitions within 30 s: {one_line(read(a_err)[-300:])}")
        b, b_out, b_err = member("b")

        def shared():
            first, second = holds(a_err), holds(b_err)
            return first and second and not first & second and first | second == everything

        if not self.wait_for(30, shared):
            raise Failure(
                f"after 30 s a holds {sorted(holds(a_err))}, b holds {sorted(holds(b_err))}; "
                f"expected both non-empty, disjoint, covering {len(everything)} partitions"
            )
        owned_a, owned_b = holds(a_err), holds(b_err)
        log(f"a holds {sorted(owned_a)}, b holds {sorted(owned_b)}")

        def send(prefix, count):
            records = [(b"k-%s-%d" % (prefix.encode(), i), b"%s-%d" % (prefix.encode(), i)) for i in range(count)]
            for index, topic in enumerate(topics):
                chunk = records[index :: len(topics)]
                reports, errors = self.produce(topic, chunk)
                self.acknowledged(chunk, len(everything) // len(topics), reports, errors)
            return {value.decode() for _, value in records}

        def of(prefix, rows):
            return [row for row in rows if row[3].startswith(prefix + "-")]

        one = send("one", 200)
        self.wait_for(30, lambda: {r[3] for r in of("one", consumed(a_out) + consumed(b_out))} >= one)
        rows_a, rows_b = of("one", consumed(a_out)), of("one", consumed(b_out))
        values = [r[3] for r in rows_a + rows_b]
        if set(values) != one or len(values) != len(one):
            raise Failure(f"the 200 records were consumed {len(values)} times, {len(set(values) & one)} distinct, within 30 s")
        wrong = [r for r in rows_a if (r[0], r[1]) not in owned_a] + [r for r in rows_b if (r[0], r[1]) not in owned_b]
        if wrong:
            raise Failure(f"records consumed by a member not owning their partition: {wrong[:2]}")
        if not rows_a or not rows_b:
            raise Failure(f"member a consumed {len(rows_a)}, b {len(rows_b)}: expected both to consume")

        b.terminate()  # kcat closes the consumer: commits, then leaves the group
        try:
            b.wait(timeout=min(15, self.remaining()))
        except subprocess.TimeoutExpired:
            raise Failure("member b did not exit within 15 s of SIGTERM") from None
        if not self.wait_for(30, lambda: holds(a_err) == everything):
            raise Failure(f"30 s after b left, a holds {sorted(holds(a_err))}, expected all {len(everything)}")
        two = send("two", 100)
        self.wait_for(30, lambda: {r[3] for r in of("two", consumed(a_out))} >= two)
        values = [r[3] for r in of("two", consumed(a_out))]
        if set(values) != two or len(values) != len(two):
            raise Failure(f"after b left, a consumed {len(values)} ({len(set(values) & two)} distinct) of the 100 new records")
        again = [r[3] for r in of("one", consumed(a_out))]
        if len(again) != len(rows_a):
            raise Failure(f"a consumed {len(again) - len(rows_a)} of the first 200 again after b left (b's commit lost?)")

    def s_commit_resume(self):
        # Auto-created topics have the broker's partition count: all 150 records go to
        # partition 0, the others stay empty.
        topic = self.topic()
        self.create_topic(topic)
        offsets, records = self.produce_values(topic, 150)
        if offsets != list(range(150)):
            raise Failure("acknowledged offsets are not 0..149")
        group = f"compat-kcat-{self.name}-{self.suffix}"
        args = ["-G", group, topic, "-f", FORMAT, "-m", "10", "-X", "auto.offset.reset=earliest"]
        # -c 100: kcat stops after 100 records and closes the consumer, which commits the
        # offset of what it returned (100) synchronously and leaves.
        stdout, _, _ = self.kcat([*args, "-c", "100"], timeout=45)
        self.expect_offsets(parse_consumed(stdout), offsets[:100], records[:100])
        stdout, _, _ = self.kcat([*args, "-e"], timeout=45)
        self.expect_offsets(parse_consumed(stdout), offsets[100:], records[100:])

    def s_error_unknown_topic(self):
        topic = self.topic()
        listed = self.metadata(topic, auto_create=False)["topics"]
        error = listed[0].get("error") if listed else None
        if error != "Broker: Unknown topic or partition":
            raise Failure(f"metadata of missing {topic} without auto-creation: {one_line(json.dumps(listed))}")

    def s_error_invalid_topic(self):
        # kcat creates topics only by auto-creation: metadata for 'bad/name' asking the broker
        # to create it.
        listed = self.metadata("bad/name", auto_create=True)["topics"]
        error = listed[0].get("error") if listed else None
        if error != "Broker: Invalid topic":
            raise Failure(f"auto-creating bad/name: expected 'Broker: Invalid topic', got {one_line(json.dumps(listed))}")

    def s_error_too_large(self):
        topic = self.topic()
        self.create_topic(topic)
        path = self.path("too-large.bin")
        with open(path, "wb") as handle:
            handle.write(os.urandom(2_000_000))
        reports, errors = self.produce_file(
            topic, path, 0, extra=["-X", "message.max.bytes=4000000", "-X", "acks=all"]
        )
        if reports or errors != ["Broker: Message size too large"]:
            raise Failure(f"expected delivery failure 'Broker: Message size too large', got reports {reports}, errors {errors}")
        left = self.consume(topic)
        if left:
            raise Failure(f"the topic is not empty: {left[:3]}")

    def s_error_out_of_range(self):
        topic = self.topic()
        self.create_topic(topic)
        self.produce_values(topic, 10)
        stdout, stderr, code = self.kcat(
            ["-C", "-t", topic, "-p", "0", "-o", "1000", "-e", "-f", FORMAT, "-m", "10",
             "-X", "auto.offset.reset=error"],
            check=False,
        )
        if "Broker: Offset out of range" not in stderr or stdout:
            raise Failure(f"expected 'Broker: Offset out of range' (exit {code}): {one_line(stderr[-300:])}")

    def run(self):
        name = self.name
        not_applicable = {
            "admin-topics": "kcat has no admin API (no create/grow/delete of topics)",
            "admin-configs": "kcat has no admin API (no describe/alter configs)",
            "delete-records": "kcat has no DeleteRecords",
            "transactions": "kcat's transactions (-X transactional.id: one transaction per run, "
            "committed at the end of the input, aborted on SIGINT) have no "
            "send-offsets-to-transaction, so the consume-transform-produce step cannot be made",
        }
        if name in not_applicable:
            raise NotApplicable(not_applicable[name])
        if name.startswith("produce-acks-"):
            return self.s_produce_acks({"0": "0", "1": "1", "all": "all"}[name.rsplit("-", 1)[1]])
        if name.startswith("compression-"):
            return self.s_compression(name.split("-", 1)[1])
        method = getattr(self, "s_" + name.replace("-", "_"), None)
        if method is None or name not in SCENARIOS:
            raise Failure("unknown scenario")
        return method()


SCENARIOS = [
    "metadata", "produce-acks-0", "produce-acks-1", "produce-acks-all", "compression-gzip",
    "compression-snappy", "compression-lz4", "compression-zstd", "keys-headers-nulls",
    "large-message", "consume-beginning", "consume-offset", "consume-timestamp", "consume-end",
    "idempotent", "group-rebalance", "commit-resume", "admin-topics", "admin-configs",
    "delete-records", "error-unknown-topic", "error-invalid-topic", "error-too-large",
    "error-out-of-range", "transactions",
]


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(SCENARIOS))
        return 0
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, name = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix=f"compat-kcat-{name}.")
    scenario = Scenario(bootstrap, name, work)

    def terminated(signum, _frame):
        raise Failure(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    ok = False
    try:
        scenario.run()
        print(f"PASS {name}", flush=True)
        ok = True
    except NotApplicable as why:
        print(f"N/A {name}: {one_line(why)}", flush=True)
        ok = True
    except Failure as why:
        print(f"FAIL {name}: {one_line(why)}", flush=True)
    except Exception as error:  # a crash of the checks is a failed scenario with its reason
        print(f"FAIL {name}: {type(error).__name__}: {one_line(error)}", flush=True)
    finally:
        scenario.stop_children()
        if ok and not os.environ.get("LMQ_COMPAT_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"{name}: details in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
