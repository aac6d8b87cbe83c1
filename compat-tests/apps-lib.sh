# shellcheck shell=bash
# Shared by compat-tests/connect.sh and compat-tests/streams.sh (Kafka Connect and Kafka
# Streams on a broker): arguments, a fresh broker of either kind, results. Source it after
# setting HERE, ROOT, LIB_NAME and sourcing scripts/lib.sh; it sets KIND, BINARY, BOOTSTRAP,
# WORK, KAFKA and an EXIT trap that stops the broker it started and removes WORK (kept on a
# failure or with LMQ_COMPAT_KEEP=1).
#
#   SCRIPT lmq|kafka [--binary PATH] [--bootstrap HOST:PORT]
#
# Without --bootstrap a fresh broker of KIND is started for the run: `lmq serve` from
# --binary (default target/debug/lmq) with no initial rebalance delay, or a single-node KRaft
# Apache Kafka from scripts/kafka.sh (which sets group.initial.rebalance.delay.ms=0 too).
# With --bootstrap the broker there is used and KIND only names it in the results.

apps_usage() {
  echo "usage: $0 lmq|kafka [--binary PATH] [--bootstrap HOST:PORT]" >&2
  exit 2
}

KIND="${1:-}"
[[ "$KIND" == lmq || "$KIND" == kafka ]] || apps_usage
shift
BINARY="$ROOT/target/debug/lmq"
BOOTSTRAP=""
while [[ $# -gt 0 ]]; do
  case "$1" in
  --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
  --bootstrap) BOOTSTRAP="${2:?--bootstrap needs HOST:PORT}"; shift 2 ;;
  *) apps_usage ;;
  esac
done

# What both need, installed when missing (as compat-tests/prereqs.sh does): a JDK (Kafka 4.x
# needs Java 17+) and Maven (scripts/kafka.sh resolves the jars with it).
command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
KAFKA="$ROOT/scripts/kafka.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-$(basename "$0" .sh)-$KIND.XXXXXX")"
OWN_LMQ_PID=""
OWN_KAFKA_DIR=""
APP_PID="" # the application's process (a Connect worker), stopped first at exit

# shellcheck disable=SC2317 # the EXIT trap calls it
apps_cleanup() {
  local rc=$?
  [[ -z "$APP_PID" ]] || stop_pid "$APP_PID" 10 || true
  if [[ -n "$OWN_LMQ_PID" ]]; then
    stop_pid "$OWN_LMQ_PID" 15 || log "lmq ignored SIGTERM for 15 s, killed it"
  fi
  [[ -z "$OWN_KAFKA_DIR" ]] || "$KAFKA" broker stop "$OWN_KAFKA_DIR" >/dev/null 2>&1 || true
  if ((rc == 0)) && [[ -z "${LMQ_COMPAT_KEEP:-}" ]]; then
    rm -rf "$WORK"
  else
    log "logs kept in $WORK"
  fi
}
trap apps_cleanup EXIT
trap 'exit 130' INT TERM

start_own_broker() { # sets BOOTSTRAP unless it was given
  [[ -z "$BOOTSTRAP" ]] || return 0
  local port
  port="$(free_port)"
  BOOTSTRAP="127.0.0.1:$port"
  if [[ "$KIND" == kafka ]]; then
    OWN_KAFKA_DIR="$WORK/kafka"
    "$KAFKA" broker start "$OWN_KAFKA_DIR" "$port" >&2
    return 0
  fi
  [[ -x "$BINARY" ]] || die "no lmq binary at $BINARY: cargo build -p lmq-broker, or pass --binary"
  printf '[group]\ninitial_rebalance_delay_ms = 0\n' >"$WORK/lmq.toml"
  RUST_LOG="${RUST_LOG:-info}" "$BINARY" serve --config "$WORK/lmq.toml" --node-id 1 \
    --admin-listen off --data-dir "$WORK/lmq-data" --listen "$BOOTSTRAP" \
    >"$WORK/lmq.log" 2>&1 </dev/null &
  OWN_LMQ_PID=$!
  if ! wait_for_line "$WORK/lmq.log" 'lmq ready' 30 "$OWN_LMQ_PID" >/dev/null || ! wait_for_port "$port" 10; then
    die "lmq did not start within 30 s: $(tail -n 5 "$WORK/lmq.log")"
  fi
  say "lmq serving on $BOOTSTRAP (pid $OWN_LMQ_PID, log $WORK/lmq.log)"
}

own_broker_alive() { # 1 when the broker this script started has died
  [[ -z "$OWN_LMQ_PID" ]] || alive "$OWN_LMQ_PID"
}

write_log_config() { # FILE LOG: a log4j2 configuration logging INFO to LOG (appended)
  cat >"$1" <<EOF
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $2
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
}

log_tail() { # FILE [LINES]: the file's last lines (default 25), its warnings and errors first
  local file="$1" lines="${2:-25}"
  [[ -f "$file" ]] || { echo "($file does not exist)"; return 0; }
  echo "--- last errors and warnings of $file:"
  grep -E -A1 '\] (ERROR|WARN) ' "$file" | grep -v '^--$' | tail -n 16 | cut -c1-400 || true
  echo "--- last $lines lines of $file:"
  tail -n "$lines" "$file" | cut -c1-400
}
