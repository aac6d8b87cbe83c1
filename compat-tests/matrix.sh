#!/usr/bin/env bash
# The compatibility harness: the matrix (compat-tests/run: every client family × scenario)
# against a fresh `lmq serve`, then the broker scenarios (compat-tests/broker-scenarios.sh:
# kill -9 and torn-tail durability, committed offsets across restarts, several group members
# per client, Kafka's CLI tools, a clean SIGTERM stop) against a second fresh `lmq serve`;
# with --kafka also the matrix against a fresh Apache Kafka 4.x (scripts/kafka.sh).
#
#   compat-tests/matrix.sh BINARY [--kafka] [--differential] [--families A,B,...] [--scenarios A,B,...]
#
# --scenarios names matrix scenarios and broker scenarios alike; without it every one runs.
# Broker scenarios run against LMQ only (they kill, damage and restart the broker process) and
# not with --differential (they are not recorded); --families narrows the matrix only.
#
# --differential (implies --kafka) runs every scenario on its own through a recording proxy
# (compat-tests/diff, `lmq-diff`) against each broker, then compares the two brokers' answers
# field by field (ignoring only compat-tests/diff-ignore.txt): compat-tests/results/
# differences.txt and .json, recordings under compat-tests/results/recordings/.
#
# Each broker gets a free 127.0.0.1 port, an empty data dir and no initial rebalance delay
# (as scripts/kafka.sh configures Kafka). Results: compat-tests/results/{lmq,kafka}.json and
# .txt (the printed matrix), compat-tests/results/lmq-broker.txt (the broker scenarios' PASS /
# FAIL lines, last `N passed, M failed`). Exits non-zero when an allow-listed cell fails on LMQ
# (or on Kafka) or a broker scenario fails. Broker logs and every scenario's output stay in
# the work dir when something failed, or always with LMQ_COMPAT_KEEP=1. RUST_LOG is passed to
# the broker (default info; keep lmq's info line 'lmq ready', the readiness signal).
set -euo pipefail

usage() { echo "usage: $0 BINARY [--kafka] [--differential] [--families A,B,...] [--scenarios A,B,...]   (BINARY: target/debug/lmq)" >&2; exit 2; }
[[ $# -ge 1 && -x "$1" ]] || usage
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/matrix.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=compat-tests/broker-scenarios.sh
source "$HERE/broker-scenarios.sh"

KAFKA_TOO=0
DIFFERENTIAL=0
FAMILIES=()
SCENARIOS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
  --kafka) KAFKA_TOO=1; shift ;;
  --differential) KAFKA_TOO=1; DIFFERENTIAL=1; shift ;;
  --scenarios) SCENARIOS="${2:?--scenarios needs a list}"; shift 2 ;;
  --families) FAMILIES=(--families "${2:?--families needs a list}"); shift 2 ;;
  *) usage ;;
  esac
done

# The scenarios split between the matrix (compat-tests/run checks the names) and the broker.
RUN_ARGS=("${FAMILIES[@]+"${FAMILIES[@]}"}")
BROKER_RUN=()
MATRIX=1
if [[ -n "$SCENARIOS" ]]; then
  matrix_scenarios=()
  IFS=, read -r -a wanted <<<"$SCENARIOS"
  for scenario in "${wanted[@]}"; do
    if [[ " ${BROKER_SCENARIOS[*]} " == *" $scenario "* ]]; then
      BROKER_RUN+=("$scenario")
    else
      matrix_scenarios+=("$scenario")
    fi
  done
  if ((${#matrix_scenarios[@]})); then
    RUN_ARGS+=(--scenarios "$(IFS=,; echo "${matrix_scenarios[*]}")")
  else
    MATRIX=0
  fi
else
  BROKER_RUN=("${BROKER_SCENARIOS[@]}")
fi
((DIFFERENTIAL == 0)) || BROKER_RUN=()

RESULTS="$HERE/results"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-matrix.XXXXXX")"
LOGS="$WORK/logs"
DATA="$WORK/lmq-data"
mkdir -p "$RESULTS" "$LOGS"
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
KAFKA="$ROOT/scripts/kafka.sh"
KAFKA_DIR=""
STATUS=0

# shellcheck disable=SC2317 # the EXIT trap calls it
cleanup() {
  local rc=$?
  [[ -z "$BROKER_PID" ]] || stop_pid "$BROKER_PID" 10 || true
  [[ -z "$KAFKA_DIR" ]] || "$KAFKA" broker stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  if ((STATUS == 0 && rc == 0)) && [[ -z "${LMQ_COMPAT_KEEP:-}" ]]; then
    rm -rf "$WORK"
  else
    echo "matrix: logs kept in $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RECORDINGS="$RESULTS/recordings"
if ((DIFFERENTIAL)); then
  say "building the recording proxy (lmq-diff)"
  (cd "$ROOT" && cargo build --quiet --locked -p lmq-compat-diff)
  rm -rf "$RECORDINGS"
fi

if ((${#BROKER_RUN[@]})); then
  # What the broker scenarios' programs need: kcat, a venv with confluent-kafka, the Java
  # scenarios compiled against Apache Kafka's jars.
  CONFLUENT_KAFKA_VERSION=2.16.1
  PY="$LMQ_CACHE/venv/bin/python"
  # shellcheck source=compat-tests/prereqs.sh
  source "$HERE/prereqs.sh"
  export PYTHONPATH="$HERE/python"
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

PORT="$(free_port)"
BOOTSTRAP="127.0.0.1:$PORT"
printf '[group]\ninitial_rebalance_delay_ms = 0\n' >"$WORK/lmq.toml"
# Node id 1, as Kafka's: node ids then compare as equal in the differential mode.
SERVE_ARGS=(--config "$WORK/lmq.toml" --node-id 1 --admin-listen off)
start_broker || die "lmq did not start: $(broker_log_tail)"
((MATRIX == 0)) || matrix lmq "$BOOTSTRAP"

if ((${#BROKER_RUN[@]})); then
  # Their own broker on an empty data dir, as their bounds were set for: the matrix leaves
  # hundreds of partitions, and a clean stop of a debug build then takes longer than the
  # 15 s that broker-sigterm-shutdown allows.
  if ((MATRIX)); then
    stop_broker
    PORT="$(free_port)"
    BOOTSTRAP="127.0.0.1:$PORT"
    DATA="$WORK/lmq-broker-scenarios-data"
    start_broker || die "lmq did not start for the broker scenarios: $(broker_log_tail)"
  fi
  say "broker scenarios against a fresh lmq at $BOOTSTRAP: ${BROKER_RUN[*]}"
  # Not through a pipe: the scenarios restart the broker, and BROKER_PID must stay this shell's.
  for scenario in "${BROKER_RUN[@]}"; do
    broker_scenario "$scenario"
  done >"$RESULTS/lmq-broker.txt"
  echo "$PASSED passed, $FAILED failed" >>"$RESULTS/lmq-broker.txt"
  cat "$RESULTS/lmq-broker.txt"
  ((FAILED == 0)) || STATUS=1
fi

if ((KAFKA_TOO && MATRIX)); then
  KAFKA_DIR="$WORK/kafka"
  kafka_port="$(free_port)"
  "$KAFKA" broker start "$KAFKA_DIR" "$kafka_port" >&2
  matrix kafka "127.0.0.1:$kafka_port"
fi

if ((DIFFERENTIAL)); then
  say "differences between LMQ's and Kafka's answers"
  "$ROOT/target/debug/lmq-diff" compare "$RECORDINGS/lmq" "$RECORDINGS/kafka" \
    --ignore "$HERE/diff-ignore.txt" --out "$RESULTS/differences.json" | tee "$RESULTS/differences.txt"
fi
exit "$STATUS"
