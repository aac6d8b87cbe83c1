#!/usr/bin/env bash
# A/B of two lmq builds on one produce load, alternating so machine drift hits both alike:
# each round starts each binary on a fresh data dir (broker on core 0), runs `lmq-perf run`
# at saturation (core 1; 1 KiB records, 16 KiB batches, linger 5 ms, 10 s), then reads the
# topic back from offset 0 (`lmq-perf consume`), and prints the produce MB/s, the produce p99
# latency, the consume MB/s and the broker's CPU ticks (utime + stime).
#
#   scripts/ab-produce.sh BEFORE_LMQ AFTER_LMQ [FLUSH] [PARTITIONS] [ROUNDS]
#
# FLUSH is the broker's [log] flush ("os", "every-batch" or milliseconds; default
# every-batch), PARTITIONS default 8, ROUNDS default 3. Needs target/release/lmq-perf
# (cargo build --release -p lmq-bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[[ $# -ge 2 && -x "$1" && -x "$2" ]] || die "usage: $0 BEFORE_LMQ AFTER_LMQ [FLUSH] [PARTITIONS] [ROUNDS]"
BEFORE="$1" AFTER="$2" FLUSH="${3:-every-batch}" PARTITIONS="${4:-8}" ROUNDS="${5:-3}"
PERF="target/release/lmq-perf"
[[ -x "$PERF" ]] || die "$PERF is missing: cargo build --release -p lmq-bench"
PORT="$(free_port)"
ADMIN="$(free_port)"

for round in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    if [[ $side == before ]]; then bin="$BEFORE"; else bin="$AFTER"; fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/lmq-ab.XXXXXX")"
    printf '[log]\nflush = "%s"\n' "$FLUSH" >"$dir/lmq.toml"
    taskset -c 0 "$bin" serve --config "$dir/lmq.toml" --data-dir "$dir/data" \
      --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" >"$dir/log" 2>&1 &
    pid=$!
    wait_for_port "$PORT" 10 "$pid" || die "$bin did not listen (log: $dir/log)"
    out="$(taskset -c 1 "$PERF" run --bootstrap "127.0.0.1:$PORT" --topic ab \
      --partitions "$PARTITIONS" --record-size 1024 --batch-bytes 16384 --linger-ms 5 \
      --codec none --rate 0 --duration-s 10 --warmup-s 2 2>/dev/null | tail -1)"
    read_back="$(taskset -c 1 "$PERF" consume --bootstrap "127.0.0.1:$PORT" --topic ab 2>/dev/null | tail -1)"
    ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rate="$(python3 -c 'import json, sys; print("%.1f" % json.loads(sys.stdin.read())["produce_mb_per_s"])' <<<"$out")"
    p99="$(python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["produce_latency_us"]["p99"])' <<<"$out")"
    consume="$(python3 -c 'import json, sys; print("%.1f" % json.loads(sys.stdin.read())["consume_mb_per_s"])' <<<"$read_back")"
    echo "$side round $round: produce $rate MB/s (p99 $p99 us), consume $consume MB/s, broker CPU ticks $ticks"
    rm -rf "$dir"
  done
done
