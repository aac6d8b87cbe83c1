#!/usr/bin/env bash
# The compatibility matrix (compat-tests/run) against a fresh `lmq serve`, and with --kafka
# also against a fresh Apache Kafka 4.x (scripts/kafka.sh) in the same run.
#
#   compat-tests/matrix.sh BINARY [--kafka] [--differential] [--families A,B,...] [--scenarios A,B,...]
#
# --differential (implies --kafka) runs every scenario on its own through a recording proxy
# (compat-tests/diff, `lmq-diff`) against each broker, then compares the two brokers' answers
# field by field (ignoring only compat-tests/diff-ignore.txt): compat-tests/results/
# differences.txt and .json, recordings under compat-tests/results/recordings/.
#
# Each broker gets a free 127.0.0.1 port, an empty data dir and no initial rebalance delay
# (as scripts/kafka.sh configures Kafka). Results: compat-tests/results/{lmq,kafka}.json and
# .txt (the printed matrix). Exits non-zero when an allow-listed cell fails on LMQ (or on
# Kafka). Broker logs stay in the work dir when something failed.
set -euo pipefail

usage() { echo "usage: $0 BINARY [--kafka] [--differential] [--families A,B,...] [--scenarios A,B,...]   (BINARY: target/debug/lmq)" >&2; exit 2; }
[[ $# -ge 1 && -x "$1" ]] || usage
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
KAFKA_TOO=0
DIFFERENTIAL=0
RUN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --kafka) KAFKA_TOO=1; shift ;;
  --differential) KAFKA_TOO=1; DIFFERENTIAL=1; shift ;;
  --scenarios) RUN_ARGS+=(--scenarios "${2:?--scenarios needs a list}"); shift 2 ;;
  --families) RUN_ARGS+=(--families "${2:?--families needs a list}"); shift 2 ;;
  *) usage ;;
  esac
done
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
RESULTS="$HERE/results"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-matrix.XXXXXX")"
mkdir -p "$RESULTS"
LMQ_PID=""
KAFKA_DIR=""
STATUS=0

say() { echo "==> $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
  if [[ -n "$LMQ_PID" ]] && kill -0 "$LMQ_PID" 2>/dev/null; then
    kill -TERM "$LMQ_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$LMQ_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LMQ_PID" 2>/dev/null || true
  fi
  [[ -z "$KAFKA_DIR" ]] || "$ROOT/scripts/kafka.sh" broker stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  if ((STATUS == 0)); then rm -rf "$WORK"; else echo "matrix: logs kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RECORDINGS="$RESULTS/recordings"
if ((DIFFERENTIAL)); then
  say "building the recording proxy (lmq-diff)"
  (cd "$ROOT" && cargo build --quiet --locked -p lmq-compat-diff)
  rm -rf "$RECORDINGS"
fi

# NAME BOOTSTRAP: runs the matrix, keeps its printout, remembers a failure.
matrix() {
  local name="$1" bootstrap="$2" record=()
  ((DIFFERENTIAL)) && record=(--record "$RECORDINGS/$name" --proxy "$ROOT/target/debug/lmq-diff")
  say "matrix against $name at $bootstrap"
  if ! "$HERE/run" "$bootstrap" --out "$RESULTS/$name.json" "${RUN_ARGS[@]}" "${record[@]}" | tee "$RESULTS/$name.txt"; then
    STATUS=1
  fi
}

port="$(free_port)"
printf '[group]\ninitial_rebalance_delay_ms = 0\n' >"$WORK/lmq.toml"
# Node id 1, as Kafka's: node ids then compare as equal in the differential mode.
"$BINARY" serve --config "$WORK/lmq.toml" --data-dir "$WORK/lmq-data" --node-id 1 \
  --listen "127.0.0.1:$port" --admin-listen off >"$WORK/lmq.log" 2>&1 &
LMQ_PID=$!
for _ in $(seq 1 300); do
  grep -q "lmq ready" "$WORK/lmq.log" 2>/dev/null && break
  kill -0 "$LMQ_PID" 2>/dev/null || { STATUS=1; echo "lmq did not start: $(tail -n 3 "$WORK/lmq.log")" >&2; exit 1; }
  sleep 0.1
done
matrix lmq "127.0.0.1:$port"

if ((KAFKA_TOO)); then
  KAFKA_DIR="$WORK/kafka"
  kafka_port="$(free_port)"
  "$ROOT/scripts/kafka.sh" broker start "$KAFKA_DIR" "$kafka_port" >&2
  matrix kafka "127.0.0.1:$kafka_port"
fi

if ((DIFFERENTIAL)); then
  say "differences between LMQ's and Kafka's answers"
  "$ROOT/target/debug/lmq-diff" compare "$RECORDINGS/lmq" "$RECORDINGS/kafka" \
    --ignore "$HERE/diff-ignore.txt" --out "$RESULTS/differences.json" | tee "$RESULTS/differences.txt"
fi
exit "$STATUS"
