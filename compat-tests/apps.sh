#!/usr/bin/env bash
# Kafka Connect and Kafka Streams on LMQ and on Apache Kafka: compat-tests/connect.sh and
# compat-tests/streams.sh (at-least-once, then exactly_once_v2) against one fresh `lmq
# serve`, then against one fresh single-node
# Apache Kafka (scripts/kafka.sh). Passing on Kafka is what shows the checks themselves are
# right; passing on LMQ is the point.
#
#   compat-tests/apps.sh BINARY [--lmq-only | --differential]      (BINARY: target/debug/lmq)
#
# Prints each script's PASS/FAIL lines prefixed with the broker kind, then
# `apps: N passed, M failed`; exits non-zero when any check failed on either broker. Each
# script keeps its work dir (logs of the worker, the app and LMQ) when it failed.
#
# --differential runs each script behind the differential mode's recording proxy (`lmq-diff
# record`, built here) and compares the two brokers' answers field by field (`lmq-diff
# compare`, ignoring compat-tests/diff-ignore.txt): compat-tests/results/apps-differences.txt
# and .json, recordings under compat-tests/results/recordings-apps/. The report is for reading
# (these runs interleave in time differently on each broker); only the checks decide.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/apps.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

usage() { echo "usage: $0 BINARY [--lmq-only | --differential]   (BINARY: target/debug/lmq)" >&2; exit 2; }
[[ $# -ge 1 && -x "$1" ]] || usage
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
KINDS=(lmq kafka)
DIFFERENTIAL=0
case "${2:-}" in
"") ;;
--lmq-only) KINDS=(lmq) ;;
--differential) DIFFERENTIAL=1 ;;
*) usage ;;
esac
RECORDINGS="$HERE/results/recordings-apps"
LMQ_DIFF="$ROOT/target/debug/lmq-diff"
if ((DIFFERENTIAL)); then
  say "building the recording proxy (lmq-diff)"
  (cd "$ROOT" && cargo build --quiet --locked -p lmq-compat-diff)
  rm -rf "$RECORDINGS"
fi
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
KAFKA="$ROOT/scripts/kafka.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-apps.XXXXXX")"
LMQ_PID=""
KAFKA_DIR=""
PROXY_PID=""

# shellcheck disable=SC2317 # the EXIT trap calls it
cleanup() {
  [[ -z "$PROXY_PID" ]] || stop_pid "$PROXY_PID" 5 || true
  [[ -z "$LMQ_PID" ]] || stop_pid "$LMQ_PID" 15 || true
  [[ -z "$KAFKA_DIR" ]] || "$KAFKA" broker stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# checks KIND SCRIPT BOOTSTRAP: runs the script (behind a recording proxy with
# --differential), prefixes its results with KIND, counts them.
checks() {
  local kind="$1" script="$2" bootstrap="$3" line printed=0 rc=0
  if ((DIFFERENTIAL)); then
    mkdir -p "$RECORDINGS/$kind/apps"
    "$LMQ_DIFF" record --upstream "$bootstrap" --out "$RECORDINGS/$kind/apps/${script%.sh}.jsonl" \
      >"$WORK/proxy.out" 2>"$WORK/proxy.log" </dev/null &
    PROXY_PID=$!
    bootstrap="$(wait_for_line "$WORK/proxy.out" '^[0-9.]+:[0-9]+$' 10 "$PROXY_PID")" ||
      die "the recording proxy did not start: $(cat "$WORK/proxy.log")"
  fi
  "$HERE/$script" "$kind" --bootstrap "$bootstrap" >"$WORK/$kind-$script.out" || rc=$?
  if [[ -n "$PROXY_PID" ]]; then
    stop_pid "$PROXY_PID" 5 || true
    PROXY_PID=""
  fi
  while IFS= read -r line; do
    case "$line" in
    "PASS "*) result "$kind ${line#PASS }"; printed=1 ;;
    "FAIL "*) line="${line#FAIL }"; result "$kind ${line%%:*}" "${line#*: }"; printed=1 ;;
    esac
  done <"$WORK/$kind-$script.out"
  ((printed || rc == 0)) || result "$kind $script" "exited $rc without a result (its stderr is above)"
}

for kind in "${KINDS[@]}"; do
  port="$(free_port)"
  if [[ "$kind" == lmq ]]; then
    printf '[group]\ninitial_rebalance_delay_ms = 0\n' >"$WORK/lmq.toml"
    RUST_LOG="${RUST_LOG:-info}" "$BINARY" serve --config "$WORK/lmq.toml" --node-id 1 \
      --admin-listen off --data-dir "$WORK/lmq-data" --listen "127.0.0.1:$port" \
      >"$WORK/lmq.log" 2>&1 </dev/null &
    LMQ_PID=$!
    if ! wait_for_line "$WORK/lmq.log" 'lmq ready' 30 "$LMQ_PID" >/dev/null || ! wait_for_port "$port" 10; then
      die "lmq did not start within 30 s: $(tail -n 5 "$WORK/lmq.log")"
    fi
    say "apps against lmq at 127.0.0.1:$port"
  else
    KAFKA_DIR="$WORK/kafka"
    "$KAFKA" broker start "$KAFKA_DIR" "$port" >&2
    say "apps against Apache Kafka at 127.0.0.1:$port"
  fi
  checks "$kind" connect.sh "127.0.0.1:$port"
  checks "$kind" streams.sh "127.0.0.1:$port"
  # The same word count with exactly_once_v2: transactions, read_committed (issue 20).
  STREAMS_GUARANTEE=exactly_once_v2 checks "$kind" streams.sh "127.0.0.1:$port"
  if [[ "$kind" == lmq ]]; then
    alive "$LMQ_PID" || result "lmq broker-alive" "lmq died: $(tail -n 5 "$WORK/lmq.log" | tr '\n' ' ')"
    stop_pid "$LMQ_PID" 15 || result "lmq broker-stopped" "lmq ignored SIGTERM for 15 s"
    LMQ_PID=""
  else
    "$KAFKA" broker stop "$KAFKA_DIR" >/dev/null
    KAFKA_DIR=""
  fi
done

if ((DIFFERENTIAL)); then
  say "differences between LMQ's and Kafka's answers to Kafka Connect and Kafka Streams"
  "$LMQ_DIFF" compare "$RECORDINGS/lmq" "$RECORDINGS/kafka" --ignore "$HERE/diff-ignore.txt" \
    --out "$HERE/results/apps-differences.json" >"$HERE/results/apps-differences.txt"
  tail -n 1 "$HERE/results/apps-differences.txt"
fi
echo "apps: $PASSED passed, $FAILED failed"
((FAILED == 0))
