#!/usr/bin/env bash
# An LMQ cluster whose hosts are network namespaces, for network-partition tests: 3 Consul
# servers and N brokers, each in its own namespace with a veth on one bridge, so a test can
# cut chosen links (a leader from its followers, a broker from Consul) while clients in the
# root namespace still reach every broker. Needs root (ip netns, iproute2).
#
# Usage:
#   scripts/netns-cluster.sh up [N] --dir DIR   start it (default 3 brokers); the last line
#                                               printed is the bootstrap list
#   scripts/netns-cluster.sh down --dir DIR     stop every process, delete namespaces and bridge
#   scripts/netns-cluster.sh cut HOST PEER... --dir DIR
#                                               HOST can no longer exchange packets with PEERs
#                                               (blackhole routes in HOST's namespace)
#   scripts/netns-cluster.sh heal HOST --dir DIR  remove HOST's cuts
#   scripts/netns-cluster.sh ip HOST            print a host's address
# Hosts: c1 c2 c3 (Consul servers), b1..bN (brokers). Broker I listens on 10.231.0.(10+I):9092
# and talks to Consul server ((I-1) mod 3)+1 at 10.231.0.(20+S):8500. The lmq binary is
# $LMQ_BIN, else target/debug/lmq. Names start with lmqns- (namespaces) and lmqbr0 (bridge),
# so one namespace cluster runs at a time on a machine; `down` removes any of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

LIB_NAME=netns-cluster.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
usage() { print_header >&2; exit 2; }

DIR=""
command_and_dir "$@" || usage
set -- "${ARGS[@]+"${ARGS[@]}"}"

BRIDGE=lmqbr0
SUBNET=10.231.0

host_ip() {
  case "$1" in
  c[1-3]) echo "$SUBNET.$((20 + ${1#c}))" ;;
  b[0-9]*) echo "$SUBNET.$((10 + ${1#b}))" ;;
  *) die "unknown host $1 (c1..c3, b1..bN)" ;;
  esac
}
ns() { echo "lmqns-$1"; }

add_host() {
  local host="$1" ip
  ip="$(host_ip "$host")"
  ip netns add "$(ns "$host")"
  ip link add "veth-$host" type veth peer name eth0 netns "$(ns "$host")"
  ip link set "veth-$host" master "$BRIDGE" up
  ip -n "$(ns "$host")" addr add "$ip/24" dev eth0
  ip -n "$(ns "$host")" link set eth0 up
  ip -n "$(ns "$host")" link set lo up
}

# Waits (60 s) until GET http://HOST:PORT/PATH answers 200 with a body matching PATTERN.
wait_http() {
  local address="$1" path="$2" pattern="$3" answer
  for _ in $(seq 1 600); do
    answer="$(python3 -c '
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}{sys.argv[2]}", timeout=1).read().decode())
except Exception:
    pass' "$address" "$path")"
    [[ "$answer" =~ $pattern ]] && return 0
    sleep 0.1
  done
  return 1
}

up() {
  local count="${1:-3}"
  [[ -n "$DIR" ]] || die "--dir DIR is required"
  [[ $(id -u) -eq 0 ]] || die "network namespaces need root"
  if ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q '^lmqns-'; then
    die "another namespace cluster is up (one at a time: $BRIDGE, lmqns-*); run '$0 down --dir DIR' first"
  fi
  mkdir -p "$DIR"
  local consul lmq
  consul="$(scripts/consul.sh path)"
  lmq="${LMQ_BIN:-$ROOT/target/debug/lmq}"
  [[ -x "$lmq" ]] || cargo build -q -p lmq-broker --locked >&2
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  echo "$count" >"$DIR/brokers"
  local joins=() host
  for i in 1 2 3; do joins+=("-retry-join=$(host_ip "c$i")"); done
  for i in 1 2 3; do
    host="c$i"
    add_host "$host"
    mkdir -p "$DIR/$host/data"
    ip netns exec "$(ns "$host")" setsid "$consul" agent -server -bootstrap-expect=3 \
      -node="lmq-$host" -bind="$(host_ip "$host")" -client="$(host_ip "$host")" \
      "${joins[@]}" -data-dir="$DIR/$host/data" -disable-host-node-id -log-level=warn \
      -dns-port=-1 -grpc-port=-1 -hcl 'disable_update_check = true' \
      >"$DIR/$host/log" 2>&1 </dev/null &
    echo $! >"$DIR/$host/pid"
  done
  wait_http "$(host_ip c1):8500" /v1/status/leader '[0-9]+\.[0-9]+' ||
    die "no Consul leader within 60 s; see $DIR/c*/log"
  for i in $(seq 1 "$count"); do
    host="b$i"
    add_host "$host"
    mkdir -p "$DIR/$host/data"
    ip netns exec "$(ns "$host")" setsid env RUST_LOG="${RUST_LOG:-info}" "$lmq" serve \
      --consul "http://$(host_ip "c$(((i - 1) % 3 + 1))"):8500" --node-id "$i" \
      --listen "$(host_ip "$host"):9092" --admin-listen off --data-dir "$DIR/$host/data" \
      >"$DIR/$host/log" 2>&1 </dev/null &
    echo $! >"$DIR/$host/pid"
  done
  for i in $(seq 1 "$count"); do
    for _ in $(seq 1 300); do
      grep -q 'lmq ready' "$DIR/b$i/log" 2>/dev/null && break
      sleep 0.1
    done
    grep -q 'lmq ready' "$DIR/b$i/log" || die "broker $i not ready; see $DIR/b$i/log"
  done
  local list=""
  for i in $(seq 1 "$count"); do list+="${list:+,}$(host_ip "b$i"):9092"; done
  echo "$list"
}

down() {
  [[ -n "$DIR" ]] || die "--dir DIR is required"
  for pid_file in "$DIR"/*/pid; do
    [[ -f "$pid_file" ]] || continue
    kill -KILL "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  done
  # Whatever still runs in the namespaces (a child the pid file did not name) goes too, so
  # the namespaces and their veths really disappear.
  local name
  for name in $(ip netns list 2>/dev/null | awk '/^lmqns-/ {print $1}'); do
    ip netns pids "$name" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    [[ -z "$(for name in $(ip netns list 2>/dev/null | awk '/^lmqns-/ {print $1}'); do ip netns pids "$name"; done 2>/dev/null)" ]] && break
    sleep 0.1
  done
  for name in $(ip netns list 2>/dev/null | awk '/^lmqns-/ {print $1}'); do
    ip netns del "$name" 2>/dev/null || true
  done
  for link in $(ip -br link 2>/dev/null | awk '/^veth-[bc][0-9]/ {split($1, a, "@"); print a[1]}'); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

case "$COMMAND" in
up) up "$@" ;;
down) down ;;
cut)
  host="${1:?HOST needed}"
  shift
  for peer in "$@"; do ip -n "$(ns "$host")" route add blackhole "$(host_ip "$peer")/32"; done
  ;;
heal)
  ip -n "$(ns "${1:?HOST needed}")" route flush type blackhole
  ;;
ip) host_ip "${1:?HOST needed}" ;;
*) usage ;;
esac
