#!/usr/bin/env bash
# A local LMQ cluster: 3 Consul servers (scripts/consul.sh) + N brokers, each a plain
# `lmq serve --consul ...` process on its own loopback address and data dir.
#
# Usage:
#   scripts/cluster.sh up [N] [--dir DIR]   start 3 Consul servers + N brokers (default 3), wait
#                                           until every broker serves; the last line printed
#                                           is the bootstrap list host:port,host:port,...
#   scripts/cluster.sh down [--dir DIR]     stop every broker and Consul server it started
#   scripts/cluster.sh start I [--dir DIR]  (re)start broker I on its data dir, wait until ready
#   scripts/cluster.sh stop I [--dir DIR]   stop broker I cleanly (SIGTERM; it leaves the cluster)
#   scripts/cluster.sh kill I [--dir DIR]   kill -9 broker I
#   scripts/cluster.sh pause I | resume I   SIGSTOP / SIGCONT broker I
#   scripts/cluster.sh pid I                print broker I's pid
#   scripts/cluster.sh consul-kill-leader   kill -9 the Consul leader server, print its number
#   scripts/cluster.sh consul-start S       restart Consul server S (1-3)
#   scripts/cluster.sh bootstrap            print the bootstrap list
#
# Broker I listens on 127.0.0.(10+I):9092 with its admin endpoint on port 9644 of the same
# address, keeps its data in DIR/broker-I/data and its log in DIR/broker-I/log, and talks to
# Consul server ((I-1) mod 3)+1. DIR defaults to $LMQ_CLUSTER_DIR or /tmp/lmq-cluster.
# The lmq binary is $LMQ_BIN, else target/debug/lmq (built when missing).
# Extra `lmq serve` flags for every broker: $LMQ_BROKER_ARGS. Two clusters at once need
# other addresses: $LMQ_CLUSTER_IP_BASE (default 10: brokers on 127.0.0.(BASE+I)) and
# $LMQ_CLUSTER_CONSUL_PORT (default 18300, see scripts/consul.sh --base-port).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

LIB_NAME=cluster.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
usage() { print_header >&2; exit 2; }

DIR="${LMQ_CLUSTER_DIR:-/tmp/lmq-cluster}"
command_and_dir "$@" || usage
set -- "${ARGS[@]+"${ARGS[@]}"}"

lmq_bin() {
  if [[ -n "${LMQ_BIN:-}" ]]; then
    echo "$LMQ_BIN"
    return
  fi
  if [[ ! -x "$ROOT/target/debug/lmq" ]]; then
    log "building lmq"
    cargo build -q -p lmq-broker --locked >&2
  fi
  echo "$ROOT/target/debug/lmq"
}

IP_BASE="${LMQ_CLUSTER_IP_BASE:-10}"
CONSUL_PORT="${LMQ_CLUSTER_CONSUL_PORT:-18300}"
broker_ip() { echo "127.0.0.$((IP_BASE + $1))"; }
broker_dir() { echo "$DIR/broker-$1"; }

running() { # PID_FILE: names a process that runs
  [[ -f "$1" ]] && alive "$(cat "$1")"
}

# Starts broker $1 and waits for its "lmq ready" line (a restart appends to the same log).
start_broker() {
  local id="$1" dir ip consul
  dir="$(broker_dir "$id")"
  ip="$(broker_ip "$id")"
  running "$dir/pid" && die "broker $id is already running (pid $(cat "$dir/pid"))"
  consul="$(sed -n "$(((id - 1) % 3 + 1))p" "$DIR/consul-http")"
  mkdir -p "$dir/data"
  local command=("$(lmq_bin)" serve --consul "$consul" --node-id "$id"
    --listen "$ip:9092" --admin-listen "$ip:9644" --data-dir "$dir/data")
  # shellcheck disable=SC2206 # word splitting of the extra flags is intended
  command+=(${LMQ_BROKER_ARGS:-})
  printf '%q ' "${command[@]}" >"$dir/command"
  local before=0
  [[ -f "$dir/log" ]] && before="$(grep -c 'lmq ready' "$dir/log" || true)"
  setsid "${command[@]}" >>"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  local waited=0
  until [[ "$(grep -c 'lmq ready' "$dir/log" || true)" -gt "$before" ]]; do
    running "$dir/pid" || die "broker $id exited; see $dir/log: $(tail -3 "$dir/log")"
    sleep 0.1
    waited=$((waited + 1))
    ((waited < 300)) || die "broker $id not ready after 30 s; see $dir/log"
  done
}

bootstrap() {
  local list="" id
  for dir in "$DIR"/broker-*; do
    [[ -d "$dir" ]] || continue
    id="${dir##*-}"
    list+="${list:+,}$(broker_ip "$id"):9092"
  done
  echo "$list"
}

signal_broker() {
  local id="${2:?broker number needed}" dir
  dir="$(broker_dir "$id")"
  running "$dir/pid" || die "broker $id is not running"
  kill "-$1" "$(cat "$dir/pid")"
}

case "$COMMAND" in
up)
  count="${1:-3}"
  [[ "$count" =~ ^[0-9]+$ && "$count" -ge 1 && "$count" -le 200 ]] || die "N must be 1..200"
  [[ -f "$DIR/consul-http" ]] && die "a cluster is up in $DIR; run '$0 down --dir $DIR' first"
  mkdir -p "$DIR"
  scripts/consul.sh cluster start "$DIR/consul" --base-port "$CONSUL_PORT" >"$DIR/consul-http"
  for id in $(seq 1 "$count"); do
    start_broker "$id"
  done
  log "$count brokers up; logs in $DIR/broker-*/log"
  bootstrap
  ;;
down)
  for dir in "$DIR"/broker-*; do
    [[ -f "$dir/pid" ]] || continue
    pid="$(cat "$dir/pid")"
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for dir in "$DIR"/broker-*; do
    [[ -f "$dir/pid" ]] || continue
    pid="$(cat "$dir/pid")"
    stop_pid "$pid" 10 || true
    rm -f "$dir/pid"
  done
  if [[ -d "$DIR/consul" ]]; then
    scripts/consul.sh cluster stop "$DIR/consul" >/dev/null 2>&1 || true
  fi
  rm -f "$DIR/consul-http"
  ;;
start) start_broker "${1:?broker number needed}" ;;
kill)
  signal_broker KILL "${1:-}"
  rm -f "$(broker_dir "$1")/pid"
  ;;
stop)
  pid="$(cat "$(broker_dir "${1:?broker number needed}")/pid" 2>/dev/null)" || die "broker $1 is not running"
  kill -TERM "$pid"
  for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && die "broker $1 did not stop within 15 s"
  rm -f "$(broker_dir "$1")/pid"
  ;;
pause) signal_broker STOP "${1:-}" ;;
resume) signal_broker CONT "${1:-}" ;;
pid) cat "$(broker_dir "${1:?broker number needed}")/pid" ;;
consul-kill-leader)
  # consul.sh logs "killed leader nodeN" on stderr; its stdout (the new leader) is dropped.
  scripts/consul.sh cluster kill-leader "$DIR/consul" 2>&1 >/dev/null |
    sed -n 's/.*killed leader node\([0-9]\).*/\1/p'
  ;;
consul-start) scripts/consul.sh cluster start-node "$DIR/consul" "${1:?server number needed}" >/dev/null ;;
bootstrap) bootstrap ;;
*) usage ;;
esac
