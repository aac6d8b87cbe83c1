#!/usr/bin/env bash
# Run real HashiCorp Consul agents for LMQ tests (the binary: scripts/consul-build.sh, which
# builds it from its Go module once and caches it).
#
# Usage:
#   scripts/consul.sh install                 build if needed, print the binary path
#                                             (scripts/consul-build.sh)
#   scripts/consul.sh path                    the same
#   scripts/consul.sh dev start DIR [--http-port P] [--bind IP] [--acl] [--tls] [-- EXTRA_AGENT_ARGS...]
#                                             start a -dev agent, print its http address;
#                                             --acl: ACLs on (default deny), LMQ's policy and
#                                             a token for it made through the HTTP API;
#                                             --tls: an https listener too, certificates from
#                                             `consul tls`, client certificates required;
#                                             either writes DIR/env (LMQ_CONSUL_ACL_* lines)
#   scripts/consul.sh dev stop DIR
#   scripts/consul.sh cluster start DIR [--base-port B] [-- EXTRA_AGENT_ARGS...]
#                                             3 servers on 127.0.0.1/.2/.3, print 3 http addresses
#   scripts/consul.sh cluster stop DIR
#   scripts/consul.sh cluster leader DIR      print the http address of the current leader
#   scripts/consul.sh cluster kill-leader DIR kill -9 the leader, wait for a new one, print it
#   scripts/consul.sh cluster start-node DIR N restart server N (1-3), e.g. after kill-leader
#
# Environment:
#   LMQ_CACHE             cache root (default ~/.cache/lmq); binary in $LMQ_CACHE/bin/consul
#   LMQ_CONSUL_VERSION    Consul version to build (default below; 1.15+ needs modules
#                         the module proxy refuses, see scripts/consul-notes.md)
#   LMQ_CONSUL_TIMEOUT    seconds to wait for a leader (default 30 dev, 60 cluster)
#   LMQ_CONSUL_ACL_KEY_PREFIX / LMQ_CONSUL_ACL_SERVICE
#                         what LMQ's policy (--acl) grants: keys under PREFIX/ (default
#                         lmq), services named SERVICE* (default lmq-broker)
#
# Everything listens on 127.0.0.0/8 only; update checks are disabled (no internet).
set -euo pipefail

# The build: CONSUL_BIN, CONSUL_VERSION, ensure_consul.
# shellcheck source=scripts/consul-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/consul-build.sh"

LIB_NAME=consul.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  print_header >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Htuln "sport = :$1" 2>/dev/null)" ]]
  else
    port_open "$1"
  fi
}

# Picks a free port in 20000-29999 (below the usual ephemeral range), not in "$@".
pick_port() {
  local p i q taken
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 10000))
    taken=0
    for q in "$@"; do [[ "$q" == "$p" ]] && taken=1; done
    ((taken)) && continue
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "could not find a free port in 20000-29999"
}

check_loopback() {
  [[ "$1" == 127.* ]] || die "address $1 is not on 127.0.0.0/8; only loopback addresses are allowed"
}

# pid_alive PIDFILE -> prints pid if that process is alive and is a consul agent of ours.
pid_alive() {
  local f="$1" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'consul agent' || return 1
  echo "$pid"
}

# start_agent NAME_DIR LOGFILE ARGS... -> starts consul detached, writes NAME_DIR/consul.pid
start_agent() {
  local d="$1"
  shift
  local logf="$d/consul.log"
  : >"$logf"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$CONSUL_BIN" agent "$@" </dev/null >>"$logf" 2>&1 &
  else
    nohup "$CONSUL_BIN" agent "$@" </dev/null >>"$logf" 2>&1 &
  fi
  echo "$!" >"$d/consul.pid"
}

# ports_hcl HTTP HTTPS SERF_LAN SERVER: an agent's ports block; the others off (-1).
ports_hcl() {
  printf 'ports {\n  http     = %s\n  https    = %s\n  dns      = -1\n  grpc     = -1\n' "$1" "$2"
  printf '  grpc_tls = -1\n  serf_lan = %s\n  serf_wan = -1\n  server   = %s\n}\n' "$3" "$4"
}

# leader HTTP_ADDR -> prints the raft leader address ("ip:port"), empty if none.
leader_of() {
  local out
  out="$(curl -fsS --noproxy '*' --max-time 2 "$1/v1/status/leader" 2>/dev/null)" || return 0
  out="${out//\"/}"
  echo "$out"
}

# stop_pidfile PIDFILE: TERM, bounded wait, then KILL.
stop_pidfile() {
  local f="$1" pid
  if pid="$(pid_alive "$f")"; then
    stop_pid "$pid" 10 || log "pid $pid did not exit after 10s; sent SIGKILL"
    log "stopped consul pid $pid"
  fi
  rm -f "$f"
}

fail_start() {
  local logf="$1"
  shift
  log "$*"
  [[ -f "$logf" ]] && { log "last lines of $logf:"; tail -n 20 "$logf" >&2; }
  exit 1
}

# ---------------------------------------------------------------- ACL and TLS

# The ACL policy a broker needs (docs/OPERATIONS.md shows the same): its keys, its service
# registrations (the broker's and its session-check service `SERVICE-session`), sessions on
# its agent's node, and reading nodes for the health query (which leaves out what the token
# cannot read, without an error).
lmq_policy_rules() {
  local prefix="$1" service="$2"
  cat <<EOF
key_prefix "$prefix/" { policy = "write" }
service_prefix "$service" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
EOF
}

# The JSON string of stdin: backslashes, quotes and newlines escaped.
json_string() {
  local text bs='\' q='"' nl=$'\n'
  text="$(cat)"
  text="${text//"$bs"/"$bs$bs"}"
  text="${text//"$q"/"$bs$q"}"
  text="${text//"$nl"/"${bs}n"}"
  printf '"%s"' "$text"
}

# acl_put ADDR MANAGEMENT_TOKEN PATH BODY -> the answer. Retried for a while: a just-elected
# leader answers 403 "ACL not found" / 500 until its ACL system has made the initial token.
acl_put() {
  local addr="$1" token="$2" path="$3" body="$4" out="" i
  for ((i = 0; i < 100; i++)); do
    if out="$(curl -fsS --noproxy '*' --max-time 5 -X PUT -H "X-Consul-Token: $token" \
      --data "$body" "$addr$path" 2>&1)"; then
      printf '%s' "$out"
      return 0
    fi
    sleep 0.2
  done
  die "PUT $path on $addr failed: $out"
}

# Creates LMQ's policy and a token with it through the HTTP API; prints the token's secret.
acl_setup() {
  local addr="$1" management="$2" prefix="${LMQ_CONSUL_ACL_KEY_PREFIX:-lmq}"
  local service="${LMQ_CONSUL_ACL_SERVICE:-lmq-broker}" rules answer secret
  rules="$(lmq_policy_rules "$prefix" "$service" | json_string)"
  acl_put "$addr" "$management" /v1/acl/policy \
    "{\"Name\": \"lmq-broker\", \"Description\": \"what an LMQ broker needs\", \"Rules\": $rules}" \
    >/dev/null
  answer="$(acl_put "$addr" "$management" /v1/acl/token \
    '{"Description": "lmq broker", "Policies": [{"Name": "lmq-broker"}]}')"
  secret="$(sed -n 's/.*"SecretID": *"\([^"]*\)".*/\1/p' <<<"$answer" | sed -n 1p)"
  [[ -n "$secret" ]] || die "no SecretID in the token answer: $answer"
  echo "$secret"
}

# A CA, a server certificate (also for IP $2 and localhost) and a client certificate in
# DIR/tls, made by `consul tls` (no openssl needed).
make_certificates() {
  local tls="$1/tls" bind="$2"
  rm -rf "$tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    "$CONSUL_BIN" tls ca create -days 30 >/dev/null
    "$CONSUL_BIN" tls cert create -server -dc dc1 -days 30 -additional-ipaddress "$bind" >/dev/null
    "$CONSUL_BIN" tls cert create -client -dc dc1 -days 30 >/dev/null
  ) || die "consul tls could not make certificates in $tls"
  chmod 600 "$tls"/*-key.pem
}

# ---------------------------------------------------------------- dev

dev_start() {
  [[ $# -ge 1 ]] || usage
  local dir="$1"
  shift
  local http_port="" bind="127.0.0.1" extra=() acl=0 tls=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --http-port) http_port="${2:?--http-port needs a value}"; shift 2 ;;
    --bind) bind="${2:?--bind needs a value}"; shift 2 ;;
    --acl) acl=1; shift ;;
    --tls) tls=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option for 'dev start': $1" ;;
    esac
  done
  check_loopback "$bind"
  if pid_alive "$dir/consul.pid" >/dev/null; then
    die "a consul agent from $dir is already running (pid $(cat "$dir/consul.pid")); run '$0 dev stop $dir' first"
  fi
  [[ -z "$http_port" ]] || ! port_in_use "$http_port" ||
    die "http port $http_port is already in use; choose another with --http-port"
  ensure_consul
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [[ -n "$http_port" ]] || http_port="$(pick_port)"
  local serf_lan server https_port=-1 management=""
  serf_lan="$(pick_port "$http_port")"
  server="$(pick_port "$http_port" "$serf_lan")"
  ((tls)) && https_port="$(pick_port "$http_port" "$serf_lan" "$server")"
  cat >"$dir/agent.hcl" <<EOF
# Generated by scripts/consul.sh dev start
node_name            = "lmq-dev"
bind_addr            = "$bind"
client_addr          = "$bind"
advertise_addr       = "$bind"
disable_update_check = true
disable_host_node_id = true
$(ports_hcl "$http_port" "$https_port" "$serf_lan" "$server")
EOF
  if ((tls)); then
    make_certificates "$dir" "$bind"
    cat >>"$dir/agent.hcl" <<EOF
tls {
  defaults {
    ca_file   = "$dir/tls/consul-agent-ca.pem"
    cert_file = "$dir/tls/dc1-server-consul-0.pem"
    key_file  = "$dir/tls/dc1-server-consul-0-key.pem"
  }
  https {
    verify_incoming = true
  }
}
EOF
  fi
  if ((acl)); then
    management="$(cat /proc/sys/kernel/random/uuid)"
    (umask 077 && echo "$management" >"$dir/management_token")
    # The agent token (here the management one) lets the agent keep its own node in the
    # catalog; a broker's registrations go through the agent with the broker's token.
    cat >>"$dir/agent.hcl" <<EOF
acl {
  enabled        = true
  default_policy = "deny"
  down_policy    = "extend-cache"
  tokens {
    initial_management = "$management"
    agent              = "$management"
  }
}
EOF
  fi
  start_agent "$dir" -dev -config-file="$dir/agent.hcl" "${extra[@]}"
  local addr="http://$bind:$http_port" timeout="${LMQ_CONSUL_TIMEOUT:-30}" deadline
  echo "$addr" >"$dir/http_addr"
  deadline=$(($(date +%s) + timeout))
  while :; do
    pid_alive "$dir/consul.pid" >/dev/null || fail_start "$dir/consul.log" "consul dev agent exited during startup"
    [[ -n "$(leader_of "$addr")" ]] && break
    (($(date +%s) < deadline)) || {
      stop_pidfile "$dir/consul.pid"
      fail_start "$dir/consul.log" "no leader at $addr after ${timeout}s (agent stopped)"
    }
    sleep 0.2
  done
  log "dev agent pid $(cat "$dir/consul.pid") up, leader elected"
  if ((acl || tls)); then
    local env_file="$dir/env" token
    (umask 077 && echo "LMQ_CONSUL_ACL_HTTP=$addr" >"$env_file")
    if ((tls)); then
      {
        echo "LMQ_CONSUL_ACL_HTTPS=https://$bind:$https_port"
        echo "LMQ_CONSUL_ACL_CA_FILE=$dir/tls/consul-agent-ca.pem"
        echo "LMQ_CONSUL_ACL_CERT_FILE=$dir/tls/dc1-client-consul-0.pem"
        echo "LMQ_CONSUL_ACL_KEY_FILE=$dir/tls/dc1-client-consul-0-key.pem"
      } >>"$env_file"
    fi
    if ((acl)); then
      token="$(acl_setup "$addr" "$management")"
      echo "LMQ_CONSUL_ACL_TOKEN=$token" >>"$env_file"
      log "ACLs on (default deny); LMQ's policy 'lmq-broker' and its token: $env_file"
    fi
  fi
  echo "$addr"
}

dev_stop() {
  [[ $# -eq 1 ]] || usage
  stop_pidfile "$1/consul.pid"
}

# ---------------------------------------------------------------- cluster

CLUSTER_IPS=(127.0.0.1 127.0.0.2 127.0.0.3)

cluster_http_addrs() {
  local dir="$1" i
  for i in 0 1 2; do
    [[ -f "$dir/node$((i + 1))/http_addr" ]] && cat "$dir/node$((i + 1))/http_addr"
  done
  return 0
}

# Prints "LEADER_RAFT_ADDR" as seen by any live node (empty if none).
cluster_leader_raft() {
  local dir="$1" i addr l
  for i in 1 2 3; do
    pid_alive "$dir/node$i/consul.pid" >/dev/null || continue
    addr="$(cat "$dir/node$i/http_addr")"
    l="$(leader_of "$addr")"
    [[ -n "$l" ]] && { echo "$l"; return 0; }
  done
  return 0
}

# Maps a raft address "ip:port" to the node number (1..3).
node_of_raft() {
  local ip="${1%:*}" i
  for i in 0 1 2; do
    [[ "${CLUSTER_IPS[$i]}" == "$ip" ]] && { echo $((i + 1)); return 0; }
  done
  return 1
}

cluster_start() {
  [[ $# -ge 1 ]] || usage
  local dir="$1"
  shift
  local base=18300 extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --base-port) base="${2:?--base-port needs a value}"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option for 'cluster start': $1" ;;
    esac
  done
  ensure_consul
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local server=$base serf_lan=$((base + 1)) http=$((base + 200))
  local i ip p n
  for i in 1 2 3; do
    if pid_alive "$dir/node$i/consul.pid" >/dev/null; then
      die "server $i of the cluster in $dir is still running; run '$0 cluster stop $dir' first"
    fi
  done
  for ip in "${CLUSTER_IPS[@]}"; do
    for p in "$server" "$serf_lan" "$http"; do
      if [[ -n "$(ss -Htuln "src $ip:$p" 2>/dev/null)$(ss -Htuln "src 0.0.0.0:$p" 2>/dev/null)" ]]; then
        die "$ip:$p is already in use; pick other ports with --base-port B (uses B, B+1, B+200)"
      fi
    done
  done
  for i in 1 2 3; do
    ip="${CLUSTER_IPS[$((i - 1))]}"
    n="$dir/node$i"
    mkdir -p "$n/data"
    local joins=""
    for p in "${CLUSTER_IPS[@]}"; do
      [[ "$p" == "$ip" ]] && continue
      joins+="${joins:+, }\"$p:$serf_lan\""
    done
    cat >"$n/agent.hcl" <<EOF
# Generated by scripts/consul.sh cluster start
node_name            = "lmq-server-$i"
datacenter           = "dc1"
server               = true
bootstrap_expect     = 3
data_dir             = "$n/data"
bind_addr            = "$ip"
client_addr          = "$ip"
advertise_addr       = "$ip"
retry_join           = [$joins]
retry_interval       = "1s"
disable_update_check = true
disable_host_node_id = true
log_level            = "INFO"
ui_config { enabled = false }
performance { raft_multiplier = 1 }
$(ports_hcl "$http" -1 "$serf_lan" "$server")
EOF
    echo "http://$ip:$http" >"$n/http_addr"
    start_agent "$n" -config-file="$n/agent.hcl" "${extra[@]}"
  done
  local timeout="${LMQ_CONSUL_TIMEOUT:-60}" deadline leader
  deadline=$(($(date +%s) + timeout))
  while :; do
    for i in 1 2 3; do
      pid_alive "$dir/node$i/consul.pid" >/dev/null || {
        cluster_stop "$dir"
        fail_start "$dir/node$i/consul.log" "server $i exited during startup (cluster stopped)"
      }
    done
    leader="$(cluster_leader_raft "$dir")"
    [[ -n "$leader" ]] && break
    (($(date +%s) < deadline)) || {
      cluster_stop "$dir"
      fail_start "$dir/node1/consul.log" "no leader after ${timeout}s (cluster stopped)"
    }
    sleep 0.5
  done
  log "3-server cluster up, leader $leader"
  cluster_http_addrs "$dir"
}

# Restarts one (e.g. killed) server of an existing cluster with its old config and data.
cluster_start_node() {
  [[ $# -eq 2 && "$2" =~ ^[123]$ ]] || usage
  local n="$1/node$2" addr timeout="${LMQ_CONSUL_TIMEOUT:-30}" deadline
  [[ -f "$n/agent.hcl" ]] || die "$n/agent.hcl not found; run '$0 cluster start $1' first"
  pid_alive "$n/consul.pid" >/dev/null && die "node $2 of $1 is already running"
  ensure_consul
  start_agent "$n" -config-file="$n/agent.hcl"
  addr="$(cat "$n/http_addr")"
  deadline=$(($(date +%s) + timeout))
  until [[ -n "$(leader_of "$addr")" ]]; do
    pid_alive "$n/consul.pid" >/dev/null || fail_start "$n/consul.log" "server $2 exited during startup"
    (($(date +%s) < deadline)) || fail_start "$n/consul.log" "server $2 sees no leader after ${timeout}s"
    sleep 0.2
  done
  log "server $2 rejoined, leader $(leader_of "$addr")"
  echo "$addr"
}

cluster_stop() {
  [[ $# -eq 1 ]] || usage
  local i
  for i in 1 2 3; do stop_pidfile "$1/node$i/consul.pid"; done
}

cluster_leader() {
  [[ $# -eq 1 ]] || usage
  local l n
  l="$(cluster_leader_raft "$1")"
  [[ -n "$l" ]] || die "no leader in cluster $1"
  n="$(node_of_raft "$l")" || die "leader $l is not one of the cluster nodes"
  cat "$1/node$n/http_addr"
}

cluster_kill_leader() {
  [[ $# -eq 1 ]] || usage
  local dir="$1" old n pid new timeout="${LMQ_CONSUL_TIMEOUT:-30}" deadline
  old="$(cluster_leader_raft "$dir")"
  [[ -n "$old" ]] || die "no leader in cluster $dir"
  n="$(node_of_raft "$old")" || die "leader $old is not one of the cluster nodes"
  pid="$(pid_alive "$dir/node$n/consul.pid")" || die "leader node $n is not running"
  kill -KILL "$pid"
  log "killed leader node$n (pid $pid, $old)"
  deadline=$(($(date +%s) + timeout))
  while :; do
    new="$(cluster_leader_raft "$dir")"
    [[ -n "$new" && "$new" != "$old" ]] && break
    (($(date +%s) < deadline)) || die "no new leader within ${timeout}s after killing $old"
    sleep 0.2
  done
  n="$(node_of_raft "$new")"
  log "new leader node$n ($new)"
  cat "$dir/node$n/http_addr"
}

# ---------------------------------------------------------------- main

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "$cmd" in
install | path)
  ensure_consul
  echo "$CONSUL_BIN"
  ;;
dev)
  [[ $# -ge 1 ]] || usage
  sub="$1"
  shift
  case "$sub" in
  start) dev_start "$@" ;;
  stop) dev_stop "$@" ;;
  *) usage ;;
  esac
  ;;
cluster)
  [[ $# -ge 1 ]] || usage
  sub="$1"
  shift
  case "$sub" in
  start) cluster_start "$@" ;;
  stop) cluster_stop "$@" ;;
  leader) cluster_leader "$@" ;;
  kill-leader) cluster_kill_leader "$@" ;;
  start-node) cluster_start_node "$@" ;;
  *) usage ;;
  esac
  ;;
-h | --help | help) usage ;;
*) usage ;;
esac
