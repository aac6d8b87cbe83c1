#!/usr/bin/env bash
# Real Kafka clients against one `lmq serve` node: kcat, confluent-kafka (Python), Java
# kafka-clients, Kafka's own CLI tools, consumer groups (all of those as group members and
# kafka-consumer-groups), committed offsets across restarts, and kill -9 / torn-tail durability.
#
#   compat-tests/single-node.sh target/release/lmq
#
# Starts BINARY on a free 127.0.0.1 port with a fresh data dir, runs every scenario, prints
# 'PASS name' / 'FAIL name: reason' per check and, last, 'N passed, M failed'; exits non-zero
# if anything failed. Progress goes to stderr; logs stay in the work dir, which is kept when
# something failed (or with LMQ_COMPAT_KEEP=1).
#
# Installs what it needs, idempotently: kcat (apt), a venv with confluent-kafka under
# $LMQ_CACHE/venv, Apache Kafka's jars (scripts/kafka.sh), the compiled Java scenarios under
# $LMQ_CACHE/compat-java/<hash of their sources>. LMQ_CACHE defaults to ~/.cache/lmq.
# RUST_LOG is passed to the broker (default info; keep lmq's info line 'lmq ready', the
# readiness signal).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 BINARY   (e.g. target/release/lmq; build it with cargo build --release -p lmq-broker)" >&2; exit 2; }
[[ -x "$1" ]] || { echo "$0: $1 is not an executable; build it with: cargo build --release -p lmq-broker" >&2; exit 2; }
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA="$ROOT/scripts/kafka.sh"
PY="$LMQ_CACHE/venv/bin/python"
STARTED=$SECONDS

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-compat.XXXXXX")"
LOGS="$WORK/logs"
DATA="$WORK/data"
mkdir -p "$LOGS" "$LMQ_CACHE"
BROKER_PID=""
PASSED=0
FAILED=0

say() { echo "==> $*" >&2; }
die() {
  echo "compat-tests/single-node.sh: $*" >&2
  exit 2
}

cleanup() {
  local rc=$?
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  if ((FAILED > 0 || rc != 0)) || [[ -n "${LMQ_COMPAT_KEEP:-}" ]]; then
    echo "compat-tests: logs and data kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites (idempotent)

# shellcheck source=compat-tests/prereqs.sh
source "$HERE/prereqs.sh"

# ---------------------------------------------------------------- the broker

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
BOOTSTRAP="127.0.0.1:$PORT"
SERVE_ARGS=(--data-dir "$DATA" --listen "$BOOTSTRAP")
# No initial rebalance delay (Kafka's default is 3 s), as scripts/kafka.sh configures Apache
# Kafka: a group's first member is assigned at once, later ones rebalance it.
if "$BINARY" serve --help 2>/dev/null | grep -q -- '--config'; then
  printf '[group]\ninitial_rebalance_delay_ms = 0\n' >"$WORK/lmq.toml"
  SERVE_ARGS+=(--config "$WORK/lmq.toml")
fi
# The admin HTTP listener (when this build has one) gets a free port too, not its fixed default.
if "$BINARY" serve --help 2>/dev/null | grep -q -- '--admin-listen'; then
  SERVE_ARGS+=(--admin-listen "127.0.0.1:$(free_port)")
fi

# Starts BINARY on DATA and PORT and waits (30 s at most) for its 'lmq ready' line and an open
# port; returns 1 (broker killed) if it does not come up.
start_broker() {
  local before
  before="$(grep -c 'lmq ready' "$LOGS/broker.log" 2>/dev/null || true)"
  RUST_LOG="${RUST_LOG:-info}" "$BINARY" serve "${SERVE_ARGS[@]}" >>"$LOGS/broker.log" 2>&1 </dev/null &
  BROKER_PID=$!
  say "broker pid $BROKER_PID"
  for _ in $(seq 1 300); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      BROKER_PID=""
      return 1
    fi
    if (($(grep -c 'lmq ready' "$LOGS/broker.log" || true) > before)) &&
      (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  kill9_broker
  return 1
}

stop_broker() { # SIGTERM, bounded wait (15 s) then SIGKILL; sets STOP_STATUS (exit status, or 'hung')
  STOP_STATUS=""
  [[ -n "$BROKER_PID" ]] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$BROKER_PID" 2>/dev/null; then
    STOP_STATUS=hung
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  local rc=0
  wait "$BROKER_PID" 2>/dev/null || rc=$?
  [[ -n "$STOP_STATUS" ]] || STOP_STATUS=$rc
  BROKER_PID=""
}

kill9_broker() {
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

broker_up() { # the broker process lives and accepts connections
  [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

broker_log_tail() { tail -n 5 "$LOGS/broker.log" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ' | cut -c1-400; }

# ---------------------------------------------------------------- results

result() { # NAME [FAILURE-TEXT]
  if [[ -z "${2:-}" ]]; then
    echo "PASS $1"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
  fi
}

# run_scenario NAME TIMEOUT COMMAND...: COMMAND prints PASS/FAIL lines on stdout (collected
# here); its stderr goes to logs/NAME.log. A scenario that prints nothing, or is cut off by
# TIMEOUT, fails as a whole. A broker that died meanwhile is reported and restarted.
run_scenario() {
  local name="$1" limit="$2" rc=0 line printed=0 t0=$SECONDS
  shift 2
  say "scenario $name"
  timeout "$limit" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.log" </dev/null || rc=$?
  while IFS= read -r line; do
    case "$line" in
    "PASS "*) result "${line#PASS }"; printed=1 ;;
    "FAIL "*)
      line="${line#FAIL }"
      result "${line%%:*}" "${line#*: }"
      printed=1
      ;;
    esac
  done <"$LOGS/$name.out"
  say "scenario $name took $((SECONDS - t0)) s"
  if ((rc == 124)); then
    result "$name" "timed out after ${limit}s (logs/$name.log)"
  elif ((printed == 0)); then
    result "$name" "exited $rc without a result: $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-300)"
  fi
  if ! broker_up; then
    result "broker-alive-after-$name" "the broker is gone or not accepting connections: $(broker_log_tail)"
    kill9_broker
    start_broker || die "the broker does not start again (logs/broker.log)"
  fi
}

# ---------------------------------------------------------------- committed offsets across restarts

# Every group's committed offsets (those the group scenarios left, plus known commits made
# here, one group deleted) read back the same after SIGTERM + restart and after kill -9 +
# restart, through OffsetFetch (groups/admin.py).
groups_restart() {
  local state="$WORK/groups-restart.json" log="$LOGS/groups-restart.log" why
  say "scenario groups-restart"
  group_admin() { # ARGS...: groups/admin.py; prints why it failed (nothing on success)
    local out rc=0
    out="$(timeout 120 "$PY" "$HERE/groups/admin.py" "$@" 2>>"$log")" || rc=$?
    if ((rc != 0)); then echo "admin.py $1: ${out:-exit $rc: $(tail -n 1 "$log" | cut -c1-300)}"; fi
  }
  why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-a groups-restart 1)"
  [[ -n "$why" ]] || why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-gone groups-restart 2)"
  [[ -n "$why" ]] || why="$(group_admin delete "$BOOTSTRAP" "$state" groups-restart-gone)"
  [[ -n "$why" ]] || why="$(group_admin snapshot "$BOOTSTRAP" "$state")"
  if [[ -n "$why" ]]; then
    result groups-restart-sigterm "could not set up the groups before the restart: $why"
    return
  fi
  stop_broker
  if ! start_broker; then
    result groups-restart-sigterm "the broker does not start again: $(broker_log_tail)"
    start_broker || die "the broker does not start again (logs/broker.log)"
    return
  fi
  result groups-restart-sigterm "$(group_admin verify "$BOOTSTRAP" "$state")"

  # New commits right before a kill -9: an acknowledged commit survives it.
  why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-a groups-restart 3)"
  [[ -n "$why" ]] || why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-b groups-restart 4)"
  if [[ -n "$why" ]]; then
    result groups-restart-kill9 "could not commit before the kill: $why"
    return
  fi
  kill9_broker
  if ! start_broker; then
    result groups-restart-kill9 "the broker does not start after kill -9: $(broker_log_tail)"
    start_broker || die "the broker does not start again (logs/broker.log)"
    return
  fi
  result groups-restart-kill9 "$(group_admin verify "$BOOTSTRAP" "$state")"
}

# ---------------------------------------------------------------- scenario 5: durability

durability() {
  local topic="durability" state="$WORK/durability.json" why
  say "scenario durability"
  why="$(timeout 120 "$PY" "$HERE/python/durability.py" produce "$BOOTSTRAP" "$topic" "$state" 2>>"$LOGS/durability.log")" || true
  if [[ -n "$why" ]]; then
    result durability-kill9-restart "producing before the kill failed: $why"
    return
  fi
  kill9_broker
  if ! start_broker; then
    result durability-kill9-restart "the broker does not start after kill -9: $(broker_log_tail)"
    return
  fi
  why="$(timeout 120 "$PY" "$HERE/python/durability.py" verify "$BOOTSTRAP" "$topic" "$state" 2>>"$LOGS/durability.log")" || true
  result durability-kill9-restart "$why"

  # Torn tail: kill -9, cut 7 bytes off partition 0's newest .log (into its last batch) and
  # append 23 garbage bytes to partition 1's, restart.
  kill9_broker
  why="$("$PY" "$HERE/python/durability.py" damage "$DATA" "$topic" "$state" 0 truncate 7 2>>"$LOGS/durability.log")" || true
  [[ -n "$why" ]] || why="$("$PY" "$HERE/python/durability.py" damage "$DATA" "$topic" "$state" 1 append 23 2>>"$LOGS/durability.log")" || true
  if [[ -n "$why" ]]; then
    result durability-damaged-tail "could not damage the log: $why"
    start_broker || die "the broker does not start again (logs/broker.log)"
    return
  fi
  if ! start_broker; then
    result durability-damaged-tail "the broker does not start after the damage: $(broker_log_tail)"
    start_broker 2>/dev/null || true
    return
  fi
  why="$(timeout 120 "$PY" "$HERE/python/durability.py" verify "$BOOTSTRAP" "$topic" "$state" 2>>"$LOGS/durability.log")" || true
  result durability-damaged-tail "$why"
  why="$(timeout 120 "$PY" "$HERE/python/durability.py" append-after "$BOOTSTRAP" "$topic" "$state" 2>>"$LOGS/durability.log")" || true
  result durability-append-after-damage "$why"

  # A clean restart keeps all of it, the records written after the damage included.
  stop_broker
  if ! start_broker; then
    result durability-clean-restart "the broker does not start again: $(broker_log_tail)"
    return
  fi
  why="$(timeout 120 "$PY" "$HERE/python/durability.py" verify "$BOOTSTRAP" "$topic" "$state" 2>>"$LOGS/durability.log")" || true
  result durability-clean-restart "$why"
}

# ---------------------------------------------------------------- run

say "starting $BINARY serve ${SERVE_ARGS[*]}"
start_broker || die "the broker did not become ready within 30 s: $(broker_log_tail)"

export PYTHONPATH="$HERE/python"
run_scenario kcat 240 "$HERE/kcat/kcat.sh" "$BOOTSTRAP" "$WORK/kcat" "$PY"
run_scenario python-idempotent 180 "$PY" "$HERE/python/idempotent.py" "$BOOTSTRAP" python-idempotent
run_scenario java-roundtrip 180 env KAFKA_EXTRA_CLASSPATH="$JAVA_CLASSES" "$KAFKA" tool RoundTrip "$BOOTSTRAP" java-roundtrip
run_scenario cli 480 "$HERE/cli/cli.sh" "$BOOTSTRAP" "$WORK/cli"
run_scenario groups-kcat 150 "$HERE/groups/kcat-group.sh" "$BOOTSTRAP" "$WORK/groups-kcat" "$PY"
run_scenario groups-python 180 "$PY" "$HERE/groups/python_group.py" "$BOOTSTRAP" groups-python "$WORK/groups-python"
for mode in default range cooperative; do
  run_scenario "groups-java-$mode" 180 env KAFKA_EXTRA_CLASSPATH="$JAVA_CLASSES" "$KAFKA" tool GroupConsumers "$BOOTSTRAP" "groups-java-$mode" "$mode"
done
run_scenario groups-cli 300 "$HERE/groups/consumer-groups.sh" "$BOOTSTRAP" "$WORK/groups-cli" "$PY"
groups_restart
durability

# A clean stop: SIGTERM, exit status 0 within 15 s.
say "stopping the broker"
if [[ -n "$BROKER_PID" ]]; then
  stop_broker
  case "$STOP_STATUS" in
  0) result broker-sigterm-shutdown ;;
  hung) result broker-sigterm-shutdown "still running 15 s after SIGTERM (killed)" ;;
  *) result broker-sigterm-shutdown "exit status $STOP_STATUS: $(broker_log_tail)" ;;
  esac
fi

say "done in $((SECONDS - STARTED)) s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
