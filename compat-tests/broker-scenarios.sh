# shellcheck shell=bash
# The broker scenarios of the compatibility matrix (compat-tests/matrix.sh sources this file):
# the checks that need the broker process itself (kill -9, a torn log tail, restarts, SIGTERM)
# and the deeper single-client programs (several group members, Kafka's CLI tools), run against
# a fresh `lmq serve` that matrix.sh starts for them.
#
# The caller defines HERE, WORK, LOGS, PY, KAFKA, JAVA_CLASSES (prereqs.sh), BOOTSTRAP and, for
# the broker control, BINARY, SERVE_ARGS (without --listen and --data-dir), DATA and PORT; lib.sh
# (say, die, port_open, alive, stop_pid, result) is sourced. Every check prints `PASS name` or
# `FAIL name: reason` on stdout (lib.sh's result, which counts them in PASSED / FAILED).

# In run order; `broker-sigterm-shutdown` stops the broker, so it is last.
BROKER_SCENARIOS=(kcat-roundtrip python-idempotent java-roundtrip cli groups-kcat groups-python
  groups-java-default groups-java-range groups-java-cooperative groups-cli groups-restart
  durability broker-sigterm-shutdown)
BROKER_PID=""

# ---------------------------------------------------------------- the broker

# Starts BINARY on DATA and PORT and waits (30 s at most) for a new 'lmq ready' line and an
# open port; returns 1 (broker killed) if it does not come up.
start_broker() {
  local before tenths=300
  before="$(grep -c 'lmq ready' "$LOGS/broker.log" 2>/dev/null || true)"
  RUST_LOG="${RUST_LOG:-info}" "$BINARY" serve "${SERVE_ARGS[@]}" --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
    >>"$LOGS/broker.log" 2>&1 </dev/null &
  BROKER_PID=$!
  say "broker pid $BROKER_PID"
  while ((tenths-- > 0)); do
    if ! alive "$BROKER_PID"; then
      BROKER_PID=""
      return 1
    fi
    if (($(grep -c 'lmq ready' "$LOGS/broker.log" || true) > before)) && port_open "$PORT"; then
      return 0
    fi
    sleep 0.1
  done
  kill9_broker
  return 1
}

stop_broker() { # SIGTERM, 15 s then SIGKILL; sets STOP_STATUS (exit status, or 'hung')
  STOP_STATUS=""
  [[ -n "$BROKER_PID" ]] || return 0
  stop_pid "$BROKER_PID" 15 || STOP_STATUS=hung
  local rc=0
  wait "$BROKER_PID" 2>/dev/null || rc=$?
  [[ -n "$STOP_STATUS" ]] || STOP_STATUS=$rc
  BROKER_PID=""
}

kill9_broker() {
  [[ -n "$BROKER_PID" ]] || return 0
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

broker_up() { # the broker process lives and accepts connections
  [[ -n "$BROKER_PID" ]] && alive "$BROKER_PID" && port_open "$PORT"
}

broker_log_tail() { tail -n 5 "$LOGS/broker.log" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ' | cut -c1-400; }

restart_or_die() { start_broker || die "the broker does not start again (logs/broker.log)"; }

# ---------------------------------------------------------------- scenario programs

# program NAME TIMEOUT COMMAND...: COMMAND prints PASS/FAIL lines on stdout (collected here);
# its stderr goes to logs/NAME.log. A program that prints nothing, or is cut off by TIMEOUT,
# fails as a whole. A broker that died meanwhile is reported and restarted.
program() {
  local name="$1" limit="$2" rc=0 line printed=0
  shift 2
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
  if ((rc == 124)); then
    result "$name" "timed out after ${limit}s (logs/$name.log)"
  elif ((printed == 0)); then
    result "$name" "exited $rc without a result: $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-300)"
  fi
}

# ---------------------------------------------------------------- committed offsets across restarts

group_admin() { # ARGS...: groups/admin.py; prints why it failed (nothing on success)
  local out rc=0 log="$LOGS/groups-restart.log"
  out="$(timeout 120 "$PY" "$HERE/groups/admin.py" "$@" 2>>"$log")" || rc=$?
  if ((rc != 0)); then echo "admin.py $1: ${out:-exit $rc: $(tail -n 1 "$log" | cut -c1-300)}"; fi
}

# restarted CHECK HOW: stops the broker (HOW: `sigterm`, or `kill` for kill -9) and starts it
# on its data dir again; when it does not start, CHECK fails with the log's tail, the broker
# is started once more (or the run dies) and 1 is returned.
restarted() {
  local check="$1" how="$2"
  if [[ "$how" == kill ]]; then kill9_broker; else stop_broker; fi
  start_broker && return 0
  result "$check" "the broker does not start again after $how: $(broker_log_tail)"
  restart_or_die
  return 1
}

# Every group's committed offsets (those the scenarios before left, plus known commits made
# here, one group deleted) read back the same after SIGTERM + restart and after kill -9 +
# restart, through OffsetFetch (groups/admin.py).
groups_restart() {
  local state="$WORK/groups-restart.json" why
  why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-a groups-restart 1)"
  [[ -n "$why" ]] || why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-gone groups-restart 2)"
  [[ -n "$why" ]] || why="$(group_admin delete "$BOOTSTRAP" "$state" groups-restart-gone)"
  [[ -n "$why" ]] || why="$(group_admin snapshot "$BOOTSTRAP" "$state")"
  if [[ -n "$why" ]]; then
    result groups-restart-sigterm "could not set up the groups before the restart: $why"
    return
  fi
  restarted groups-restart-sigterm sigterm || return 0
  result groups-restart-sigterm "$(group_admin verify "$BOOTSTRAP" "$state")"

  # New commits right before a kill -9: an acknowledged commit survives it.
  why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-a groups-restart 3)"
  [[ -n "$why" ]] || why="$(group_admin commit "$BOOTSTRAP" "$state" groups-restart-b groups-restart 4)"
  if [[ -n "$why" ]]; then
    result groups-restart-kill9 "could not commit before the kill: $why"
    return
  fi
  restarted groups-restart-kill9 kill || return 0
  result groups-restart-kill9 "$(group_admin verify "$BOOTSTRAP" "$state")"
}

# ---------------------------------------------------------------- durability: kill -9 and torn tails

durability_py() { # COMMAND ARGS...: python/durability.py; prints why it failed (nothing on success)
  timeout 120 "$PY" "$HERE/python/durability.py" "$@" 2>>"$LOGS/durability.log" || true
}

durability() {
  local topic="durability" state="$WORK/durability.json" why
  why="$(durability_py produce "$BOOTSTRAP" "$topic" "$state")"
  if [[ -n "$why" ]]; then
    result durability-kill9-restart "producing before the kill failed: $why"
    return
  fi
  restarted durability-kill9-restart kill || return 0
  result durability-kill9-restart "$(durability_py verify "$BOOTSTRAP" "$topic" "$state")"

  # Torn tail: kill -9, cut 7 bytes off partition 0's newest .log (into its last batch) and
  # append 23 garbage bytes to partition 1's, restart.
  kill9_broker
  why="$(durability_py damage "$DATA" "$topic" "$state" 0 truncate 7)"
  [[ -n "$why" ]] || why="$(durability_py damage "$DATA" "$topic" "$state" 1 append 23)"
  if [[ -n "$why" ]]; then
    result durability-damaged-tail "could not damage the log: $why"
    restart_or_die
    return
  fi
  if ! start_broker; then
    result durability-damaged-tail "the broker does not start after the damage: $(broker_log_tail)"
    restart_or_die
    return
  fi
  result durability-damaged-tail "$(durability_py verify "$BOOTSTRAP" "$topic" "$state")"
  result durability-append-after-damage "$(durability_py append-after "$BOOTSTRAP" "$topic" "$state")"

  # A clean restart keeps all of it, the records written after the damage included.
  restarted durability-clean-restart sigterm || return 0
  result durability-clean-restart "$(durability_py verify "$BOOTSTRAP" "$topic" "$state")"
}

# A clean stop: SIGTERM, exit status 0 within 15 s.
sigterm_shutdown() {
  [[ -n "$BROKER_PID" ]] || { result broker-sigterm-shutdown "the broker is not running"; return; }
  stop_broker
  case "$STOP_STATUS" in
  0) result broker-sigterm-shutdown ;;
  hung) result broker-sigterm-shutdown "still running 15 s after SIGTERM (killed)" ;;
  *) result broker-sigterm-shutdown "exit status $STOP_STATUS: $(broker_log_tail)" ;;
  esac
}

# ---------------------------------------------------------------- the table

# broker_scenario NAME: one scenario of BROKER_SCENARIOS against BOOTSTRAP; a broker that died
# during it is reported (broker-alive-after-NAME) and restarted.
broker_scenario() {
  local name="$1" started=$SECONDS
  local java_tool=(env KAFKA_EXTRA_CLASSPATH="$JAVA_CLASSES" "$KAFKA" tool)
  say "broker scenario $name"
  case "$name" in
  kcat-roundtrip) program "$name" 240 "$HERE/kcat/kcat.sh" "$BOOTSTRAP" "$WORK/kcat" "$PY" ;;
  python-idempotent) program "$name" 180 "$PY" "$HERE/python/idempotent.py" "$BOOTSTRAP" python-idempotent ;;
  java-roundtrip) program "$name" 180 "${java_tool[@]}" RoundTrip "$BOOTSTRAP" java-roundtrip ;;
  cli) program "$name" 480 "$HERE/cli/cli.sh" "$BOOTSTRAP" "$WORK/cli" ;;
  groups-kcat) program "$name" 150 "$HERE/groups/kcat-group.sh" "$BOOTSTRAP" "$WORK/groups-kcat" "$PY" ;;
  groups-python) program "$name" 180 "$PY" "$HERE/groups/python_group.py" "$BOOTSTRAP" groups-python "$WORK/groups-python" ;;
  groups-java-*) program "$name" 180 "${java_tool[@]}" GroupConsumers "$BOOTSTRAP" "$name" "${name#groups-java-}" ;;
  groups-cli) program "$name" 300 "$HERE/groups/consumer-groups.sh" "$BOOTSTRAP" "$WORK/groups-cli" "$PY" ;;
  groups-restart) groups_restart ;;
  durability) durability ;;
  broker-sigterm-shutdown) sigterm_shutdown; return ;;
  *) die "unknown broker scenario $name; known: ${BROKER_SCENARIOS[*]}" ;;
  esac
  say "broker scenario $name took $((SECONDS - started)) s"
  if ! broker_up; then
    result "broker-alive-after-$name" "the broker is gone or not accepting connections: $(broker_log_tail)"
    kill9_broker
    restart_or_die
  fi
}
