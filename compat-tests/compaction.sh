#!/usr/bin/env bash
# Log compaction seen by a real client (kcat/librdkafka), issue 19's check: N records over
# K keys (every tenth key ends with a tombstone) into a compacted topic, then after the
# cleaner ran: exactly one record per live key (its latest value), no record of a deleted
# key once delete.retention.ms passed, offsets still increasing, and the partition's size
# on disk within 2x of the live data.
#
#   compat-tests/compaction.sh BINARY [RECORDS] [KEYS]   (defaults 1000000 and 10000)
#
# Prints PASS/FAIL lines and `compaction: N passed, M failed`; keeps its work dir on failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LIB_NAME=compat-tests/compaction.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
[[ $# -ge 1 && -x "$1" ]] || { echo "usage: $0 BINARY [RECORDS] [KEYS]" >&2; exit 2; }
LMQ="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
RECORDS="${2:-1000000}"
KEYS="${3:-10000}"
need kcat "run compat-tests/prereqs.sh (Debian package kcat)"
need python3 "install python3"

WORK="$(mktemp -d /tmp/compat-compaction-XXXXXX)"
PASSED=0
FAILED=0
check() { # NAME CONDITION-TEXT: PASS when the last command succeeded
  if [[ "$2" == ok ]]; then
    echo "PASS compaction $1"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL compaction $1: $2"
    FAILED=$((FAILED + 1))
  fi
}
cleanup() {
  local rc=$?
  if [[ -n "${PID:-}" ]]; then stop_pid "$PID" 20 || true; fi
  if ((FAILED == 0 && rc == 0)); then rm -rf "$WORK"; else echo "compaction: work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT

# A cleaner that looks often (Kafka's default backoff is 15 s).
cat >"$WORK/lmq.toml" <<'EOF'
[cleaner]
backoff_ms = 200
EOF
"$LMQ" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --admin-listen off \
  --config "$WORK/lmq.toml" >"$WORK/lmq.log" 2>&1 &
PID=$!
ready="$(wait_for_line "$WORK/lmq.log" 'lmq ready' 30 "$PID")" || die "lmq did not start: $WORK/lmq.log"
BOOTSTRAP="$(lmq_ready_address "$ready" listen)"
TOPIC=compacted
# Small segments so most of the data is in sealed (cleanable) segments; tombstones may go
# one second after the pass that first reaches them.
"$LMQ" topics create "$TOPIC" --partitions 1 -b "$BOOTSTRAP" \
  --config cleanup.policy=compact --config segment.bytes=1048576 \
  --config min.cleanable.dirty.ratio=0.01 --config delete.retention.ms=1000 \
  --config segment.ms=2000 >/dev/null

say "producing $RECORDS records over $KEYS keys (every tenth key deleted at the end)"
python3 - "$RECORDS" "$KEYS" >"$WORK/input" <<'EOF'
import sys
records, keys = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
for i in range(records - keys // 10):
    key = i % keys
    out.write(f"k{key}:v{i}\n")
# The tombstones: an empty value, sent as NULL (kcat -Z).
for key in range(0, keys, 10):
    out.write(f"k{key}:\n")
EOF
kcat -P -b "$BOOTSTRAP" -t "$TOPIC" -p 0 -K : -Z -X linger.ms=20 -X batch.num.messages=5000 \
  <"$WORK/input" 2>"$WORK/kcat-produce.log"
# What a correct compacted log holds: the latest value of every live key.
python3 - "$WORK/input" >"$WORK/expected" <<'EOF'
import sys
latest = {}
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split(":", 1)
    latest[key] = value
for key in sorted(latest):
    if latest[key] != "":
        print(f"{key}:{latest[key]}")
EOF
LIVE_BYTES=$(wc -c <"$WORK/expected")
# The active segment is never cleaned (as in Kafka): one record after segment.ms rolls it.
sleep 3
echo "end:end" | kcat -P -b "$BOOTSTRAP" -t "$TOPIC" -p 0 -K : 2>>"$WORK/kcat-produce.log"

# Read the whole log: key, value (NULL for a tombstone), offset.
read_log() {
  kcat -C -b "$BOOTSTRAP" -t "$TOPIC" -p 0 -o beginning -e -q -Z -f '%k:%s:%o\n' 2>>"$WORK/kcat-consume.log"
}
verdict() { # FILE: checks the consumed log against the expectation, prints what differs
  python3 - "$1" "$WORK/expected" <<'EOF'
import sys
seen, offsets, problems = {}, [], []
for line in open(sys.argv[1]):
    key, value, offset = line.rstrip("\n").rsplit(":", 2)
    offsets.append(int(offset))
    if key == "end":
        continue
    if key in seen:
        problems.append(f"{key} twice")
    seen[key] = value
if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
    problems.append("offsets do not increase")
expected = dict(line.rstrip("\n").split(":", 1) for line in open(sys.argv[2]))
tombstones = [key for key, value in seen.items() if value == "NULL"]
if tombstones:
    problems.append(f"{len(tombstones)} tombstones left")
live = {key: value for key, value in seen.items() if value != "NULL"}
if live != expected:
    wrong = [key for key in expected if live.get(key) != expected[key]]
    problems.append(f"{len(wrong)} keys without their latest value (e.g. {wrong[:3]}), {len(live)} live keys read, {len(expected)} expected")
print("ok" if not problems else "; ".join(problems[:5]))
EOF
}

say "waiting (up to 120 s) for the cleaner: one record per live key, tombstones gone"
outcome=""
for _ in $(seq 1 60); do
  # A kcat error is a failed check below (its message in the reason), not an exit here.
  read_log >"$WORK/log" || true
  outcome="$(verdict "$WORK/log")"
  [[ "$outcome" == ok ]] && break
  sleep 2
done
if [[ "$outcome" != ok && -s "$WORK/kcat-consume.log" ]]; then
  outcome="$outcome; kcat: $(tail -1 "$WORK/kcat-consume.log")"
fi
check one-record-per-live-key-and-no-tombstones "$outcome"
lines=$(wc -l <"$WORK/log")
if [[ "$lines" -gt 0 ]]; then check log-read ok; else check log-read "nothing read"; fi
# The log's segment files (.log; the indexes are rebuilt from them) against the live data as
# kcat printed it (keys and values): batch and record headers come on top; within 2x.
size=$(cat "$WORK/data/$TOPIC-0"/*.log | wc -c)
size_ok=$(python3 -c "print('ok' if $size <= 2 * $LIVE_BYTES else 'too big')")
check log-size-within-2x-live "$([[ $size_ok == ok ]] && echo ok || echo "$size bytes on disk for $LIVE_BYTES bytes of live data")"
echo "compaction: $RECORDS records, $KEYS keys, $(grep -c . "$WORK/expected") live, log $size bytes on disk, live data $LIVE_BYTES bytes"
echo "compaction: $PASSED passed, $FAILED failed"
((FAILED == 0))
