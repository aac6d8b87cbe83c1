#!/usr/bin/env bash
# Broker CPU per produced MB while 100 consumers long-poll idle partitions of a 1,000-partition
# topic and one producer writes to its partition 0 (lmq-perf idle-fetch; docs/PERFORMANCE.md).
# Starts a fresh broker per run on a temporary data dir, RUNS times, one JSON line per run.
#
#   scripts/idle-fetch-bench.sh [LMQ_BINARY] [LMQ_PERF_BINARY]
#
# Defaults: target/release/lmq and target/release/lmq-perf. Environment: RUNS (3), ADDR
# (127.0.0.1:19392), and IDLE_FETCH_ARGS, extra lmq-perf idle-fetch arguments (e.g.
# "--rate 5000 --seconds 30").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LMQ="${1:-$ROOT/target/release/lmq}"
PERF="${2:-$ROOT/target/release/lmq-perf}"
RUNS="${RUNS:-3}"
ADDR="${ADDR:-127.0.0.1:19392}"
[[ -x "$LMQ" && -x "$PERF" ]] || { echo "usage: $0 [LMQ_BINARY] [LMQ_PERF_BINARY]" >&2; exit 2; }

WORK="$(mktemp -d)"
BROKER_PID=""
cleanup() {
  if [[ -n "$BROKER_PID" ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

printf '[log]\nflush = "os"\n' >"$WORK/lmq.toml"
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data"
  "$LMQ" serve --config "$WORK/lmq.toml" --data-dir "$WORK/data" --listen "$ADDR" \
    --admin-listen off >"$WORK/lmq.log" 2>&1 &
  BROKER_PID=$!
  "$PERF" wait-metadata --bootstrap "$ADDR" --timeout-s 60 >/dev/null
  # shellcheck disable=SC2086 # IDLE_FETCH_ARGS is a list of arguments
  "$PERF" idle-fetch --bootstrap "$ADDR" --broker-pid "$BROKER_PID" --topic "idle-$run" \
    ${IDLE_FETCH_ARGS:-}
  kill -TERM "$BROKER_PID"
  wait "$BROKER_PID" || true
  BROKER_PID=""
done
