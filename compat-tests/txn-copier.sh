#!/usr/bin/env bash
# Exactly-once copying with Apache Kafka's own transactional test tool (issue 20): Kafka's
# TransactionalMessageCopier (kafka-tools, what Kafka's system test
# tests/kafkatest/tests/core/transactions_test.py runs) copies every record of an input topic
# to an output topic, one copier per input partition (transactional id copier-P, one consumer
# group, read_committed input, offsets sent with each transaction, random aborts on as in
# Kafka's test). On LMQ it runs in a 3-broker cluster (scripts/cluster.sh) while, round after
# round, a copier is killed with SIGKILL, then the transaction coordinator of that copier, the
# leader of an output partition, the leader of an input partition and the group coordinator
# are killed with SIGKILL and restarted (Kafka's test "bounces" brokers and copiers; a copier
# that dies is restarted and its successor fences it, as there). On Apache Kafka it runs on a
# single broker without faults. Then, both ways: a read_committed reader of the output sees
# every input record exactly once and, per partition, in input order; so did a read_committed
# consumer that read the output live through the faults; every copier finished.
#
#   compat-tests/txn-copier.sh lmq|kafka [--binary PATH] [--records N] [--rounds R]
#
# Defaults: 10,000 records and 1 fault round (the short version scripts/test.sh runs);
# LMQ_TXN_COPIER_RECORDS / LMQ_TXN_COPIER_ROUNDS set them too (the long run: 100000 and 5).
# LMQ_TXN_COPIER_TXN_SIZE is the copiers' --transaction-size (default 50). The cluster uses
# LMQ_CLUSTER_IP_BASE (default here 40: brokers on 127.0.0.41-43) and
# LMQ_CLUSTER_CONSUL_PORT (default here 18400), so it does not meet compat-tests/cluster.sh's.
# Prints PASS/FAIL lines, the figures, and `txn-copier KIND: N passed, M failed`; logs are
# kept in the work dir on a failure or with LMQ_COMPAT_KEEP=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LIB_NAME=compat-tests/txn-copier.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
usage() { echo "usage: $0 lmq|kafka [--binary PATH] [--records N] [--rounds R]" >&2; exit 2; }

KIND="${1:-}"
[[ "$KIND" == lmq || "$KIND" == kafka ]] || usage
shift
BINARY="$ROOT/target/debug/lmq"
RECORDS="${LMQ_TXN_COPIER_RECORDS:-10000}"
ROUNDS="${LMQ_TXN_COPIER_ROUNDS:-1}"
TXN_SIZE="${LMQ_TXN_COPIER_TXN_SIZE:-50}"
while [[ $# -gt 0 ]]; do
  case "$1" in
  --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
  --records) RECORDS="${2:?--records needs a number}"; shift 2 ;;
  --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
  *) usage ;;
  esac
done
[[ "$RECORDS" =~ ^[0-9]+$ && "$RECORDS" -ge 1 ]] || die "--records must be a positive number"
[[ "$ROUNDS" =~ ^[0-9]+$ ]] || die "--rounds must be a number"
[[ "$KIND" == kafka ]] && ROUNDS=0
need kcat "run compat-tests/prereqs.sh (Debian package kcat)"
need python3 "install python3"
command -v java >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
export LMQ_CLUSTER_IP_BASE="${LMQ_CLUSTER_IP_BASE:-40}"
export LMQ_CLUSTER_CONSUL_PORT="${LMQ_CLUSTER_CONSUL_PORT:-18400}"
KAFKA="$ROOT/scripts/kafka.sh"
"$KAFKA" install

PARTITIONS=3
INPUT=copier-input
OUTPUT=copier-output
GROUP=copier-group
# Kafka's test: the transaction timeout under its 60 s progress timeout, above the 30 s
# request timeout a produce to a dead leader may wait.
TXN_TIMEOUT_MS=40000
# How long the copiers may take in all, and a reader to catch up.
COPY_TIMEOUT=$((300 + RECORDS / 100))

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-txn-copier-$KIND.XXXXXX")"
LOGS="$WORK/logs"
CLUSTER="$WORK/cluster"
mkdir -p "$LOGS"
PASSED=0
FAILED=0
SUPERVISORS=()
LIVE_PID=""
KAFKA_DIR=""
cluster() { LMQ_BIN="$BINARY" "$ROOT/scripts/cluster.sh" "$@" --dir "$CLUSTER"; }

# shellcheck disable=SC2317 # the EXIT trap calls it
cleanup() {
  local rc=$? pid
  touch "$WORK/stop"
  for pid in "${SUPERVISORS[@]+"${SUPERVISORS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
  for file in "$WORK"/copier-*.pid; do
    [[ -f "$file" ]] && { kill -9 "$(cat "$file")" 2>/dev/null || true; }
  done
  [[ -z "$LIVE_PID" ]] || kill "$LIVE_PID" 2>/dev/null || true
  if [[ "$KIND" == lmq ]]; then cluster down >/dev/null 2>&1 || true; fi
  [[ -z "$KAFKA_DIR" ]] || "$KAFKA" broker stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  if ((FAILED == 0 && rc == 0)) && [[ -z "${LMQ_COMPAT_KEEP:-}" ]]; then
    rm -rf "$WORK"
  else
    log "logs kept in $WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$SECONDS
if [[ "$KIND" == lmq ]]; then
  [[ -x "$BINARY" ]] || die "no lmq binary at $BINARY: cargo build -p lmq-broker, or pass --binary"
  BINARY="$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")"
  say "3 Consul servers + 3 LMQ brokers (127.0.0.$((LMQ_CLUSTER_IP_BASE + 1))-$((LMQ_CLUSTER_IP_BASE + 3)))"
  BOOTSTRAP="$(cluster up 3 | tail -1)"
  REPLICAS=3
  MIN_ISR=2
else
  port="$(free_port)"
  KAFKA_DIR="$WORK/kafka"
  "$KAFKA" broker start "$KAFKA_DIR" "$port" >&2
  BOOTSTRAP="127.0.0.1:$port"
  REPLICAS=1
  MIN_ISR=1
fi
say "bootstrap $BOOTSTRAP"

# The cluster metadata LMQ keeps in Consul: the authority on leaders (a broker just killed
# may still be named by another broker's Metadata answer for a moment).
consul_metadata() {
  python3 - "$(head -1 "$CLUSTER/consul-http")" <<'EOF'
import sys, urllib.request
url = sys.argv[1].rstrip("/") + "/v1/kv/lmq/kv/cluster/metadata?raw&consistent"
print(urllib.request.urlopen(url, timeout=10).read().decode())
EOF
}
# leader TOPIC PARTITION: the broker leading it.
leader() {
  consul_metadata | python3 -c '
import json, sys
topic, index = sys.argv[1], int(sys.argv[2])
print(json.load(sys.stdin)["topics"][topic]["partitions"][index]["leader"])' "$1" "$2"
}
# coordinator TOPIC KEY: the broker coordinating KEY (a transactional id in
# __transaction_state, a group in __consumer_offsets): the leader of the partition Kafka's
# rule picks, Utils.abs(key.hashCode()) % partitions.
coordinator() {
  consul_metadata | python3 -c '
import json, sys
topic, key = sys.argv[1], sys.argv[2]
partitions = json.load(sys.stdin)["topics"][topic]["partitions"]
h = 0
data = key.encode("utf-16-be")
for i in range(0, len(data), 2):
    h = (h * 31 + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
h = h - (1 << 32) if h >= 1 << 31 else h
index = 0 if h == -(1 << 31) else abs(h)
print(partitions[index % len(partitions)]["leader"])' "$1" "$2"
}
# has_topic TOPIC: the cluster metadata has it.
has_topic() {
  consul_metadata | python3 -c 'import json, sys; sys.exit(0 if sys.argv[1] in json.load(sys.stdin)["topics"] else 1)' "$1"
}
# Whether every partition of the cluster has all its replicas in sync again.
fully_replicated() {
  consul_metadata | python3 -c '
import json, sys
topics = json.load(sys.stdin)["topics"]
short = [t for t, v in topics.items() for p in v["partitions"] if len(p["isr"]) < len(p["replicas"])]
sys.exit(1 if short else 0)'
}

say "topics $INPUT and $OUTPUT: $PARTITIONS partitions, replication $REPLICAS, min.insync.replicas $MIN_ISR"
for topic in "$INPUT" "$OUTPUT"; do
  # A broker just started may not be registered yet: 3 replicas are refused until it is.
  for _ in $(seq 1 30); do
    "$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
      --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICAS" \
      --config min.insync.replicas="$MIN_ISR" >"$LOGS/topic-$topic.log" 2>&1 && break
    grep -q "already exists" "$LOGS/topic-$topic.log" && break
    sleep 1
  done
done
# kcat gives up on a topic its broker does not know yet: every broker must know both.
for broker in ${BOOTSTRAP//,/ }; do
  for topic in "$INPUT" "$OUTPUT"; do
    wait_for 20 sh -c "kcat -b $broker -L -t $topic 2>/dev/null | grep -q 'with $PARTITIONS partitions'" ||
      die "broker $broker does not know $topic after 20 s"
  done
done

say "seeding $INPUT with $RECORDS records (values 0..$((RECORDS - 1)), idempotent, acks=all)"
# Keyed by the value, so the records spread over the partitions (kcat's partitioner sticks to
# one partition for a while with null keys).
seq 0 $((RECORDS - 1)) | awk '{ print $1 ":" $1 }' |
  kcat -P -b "$BOOTSTRAP" -t "$INPUT" -K : -X acks=all -X enable.idempotence=true \
    -X linger.ms=20 >"$LOGS/seed.log" 2>&1 || die "seeding failed: $(tail -3 "$LOGS/seed.log")"
grep -q "Delivery failed" "$LOGS/seed.log" && die "seeding lost records: $(grep -m2 'Delivery failed' "$LOGS/seed.log")"
kcat -C -b "$BOOTSTRAP" -t "$INPUT" -o beginning -e -q -f '%p %s\n' >"$WORK/input.txt" 2>"$LOGS/input-read.log" ||
  die "reading $INPUT back failed: $(tail -3 "$LOGS/input-read.log")"
SEEDED=$(wc -l <"$WORK/input.txt")
[[ "$SEEDED" == "$RECORDS" ]] || die "$INPUT holds $SEEDED records, $RECORDS were sent"

# copier P: runs Kafka's TransactionalMessageCopier on input partition P until one run ends
# with nothing left to copy (its ShutdownComplete line says remaining 0, as Kafka's test
# reads it); a run that dies (killed, fenced, an error it does not retry) is started again.
copier() {
  local partition="$1" run=0 out
  while [[ ! -f "$WORK/stop" ]]; do
    run=$((run + 1))
    out="$LOGS/copier-$partition.run-$run"
    KAFKA_LOG_LEVEL=INFO "$KAFKA" tool org.apache.kafka.tools.TransactionalMessageCopier \
      --broker-list "$BOOTSTRAP" --transactional-id "copier-$partition" \
      --consumer-group "$GROUP" --input-topic "$INPUT" --input-partition "$partition" \
      --output-topic "$OUTPUT" --transaction-size "$TXN_SIZE" \
      --transaction-timeout "$TXN_TIMEOUT_MS" --enable-random-aborts --use-group-metadata \
      >"$out.jsonl" 2>"$out.log" </dev/null &
    echo $! >"$WORK/copier-$partition.pid"
    local rc=0
    wait $! || rc=$?
    echo "$run" >"$WORK/copier-$partition.runs"
    if tail -1 "$out.jsonl" | grep -q '"stage":"ShutdownComplete".*"remaining":0'; then
      touch "$WORK/copier-$partition.done"
      return 0
    fi
    local why="killed"
    ((rc == 137)) || why="$(grep -E '^Shutting down|ERROR' "$out.log" | tail -1)"
    echo "$(date -u +%T) copier-$partition run $run ended (exit $rc): $why" >>"$LOGS/copier-restarts.log"
    sleep 1
  done
}

say "copiers: one per input partition, --transaction-size $TXN_SIZE, random aborts"
COPY_START=$SECONDS
for partition in $(seq 0 $((PARTITIONS - 1))); do
  # Its stderr: bash's "Killed" notices of the copiers killed on purpose.
  copier "$partition" 2>>"$LOGS/supervisors.log" &
  SUPERVISORS+=($!)
done
# Kafka's test reads the output read_committed while it is copied, through the faults.
kcat -C -b "$BOOTSTRAP" -t "$OUTPUT" -o beginning -q -X isolation.level=read_committed \
  -f '%p %s\n' >"$WORK/live.txt" 2>"$LOGS/live.log" &
LIVE_PID=$!

copiers_done() {
  local partition
  for partition in $(seq 0 $((PARTITIONS - 1))); do
    [[ -f "$WORK/copier-$partition.done" ]] || return 1
  done
}
BROKER_KILLS=0
COPIER_KILLS=0
FAULTS_LOG="$LOGS/faults.log"
: >"$FAULTS_LOG"
# bounce WHAT BROKER: kill -9 BROKER, restart it on its data dir, wait (up to 60 s) until
# every partition has all its replicas in sync again (Kafka's test awaits no
# under-replicated partitions after each bounce).
bounce() {
  local what="$1" broker="$2"
  [[ "$broker" =~ ^[1-3]$ ]] || { echo "$(date -u +%T) no broker leads $what ($broker)" >>"$FAULTS_LOG"; return 0; }
  echo "$(date -u +%T) kill -9 broker $broker ($what)" >>"$FAULTS_LOG"
  cluster kill "$broker"
  BROKER_KILLS=$((BROKER_KILLS + 1))
  sleep 3
  cluster start "$broker"
  echo "$(date -u +%T) broker $broker restarted" >>"$FAULTS_LOG"
  wait_for 60 fully_replicated || echo "$(date -u +%T) not fully replicated 60 s after the restart" >>"$FAULTS_LOG"
  sleep 2
}
# The transaction coordinators' topic appears with the first transactional InitProducerId.
if ((ROUNDS > 0)); then
  wait_for 60 has_topic __transaction_state || die "no __transaction_state 60 s after the copiers started"
fi
for round in $(seq 1 "$ROUNDS"); do
  copiers_done && break
  p=$(((round - 1) % PARTITIONS))
  # Rounds spread over the copy: round r starts once r/(R+2) of the records are read live.
  target=$((RECORDS * round / (ROUNDS + 2)))
  wait_for 120 sh -c "[ \$(wc -l <'$WORK/live.txt') -ge $target ]" || true
  say "fault round $round of $ROUNDS ($(wc -l <"$WORK/live.txt") records copied)"
  # A copier first: its successor fences it and recovers its transaction while the
  # coordinator is killed next.
  if [[ ! -f "$WORK/copier-$p.done" && -f "$WORK/copier-$p.pid" ]]; then
    echo "$(date -u +%T) kill -9 copier-$p" >>"$FAULTS_LOG"
    kill -9 "$(cat "$WORK/copier-$p.pid")" 2>/dev/null && COPIER_KILLS=$((COPIER_KILLS + 1))
  fi
  bounce "transaction coordinator of copier-$p" "$(coordinator __transaction_state "copier-$p")"
  copiers_done && break
  bounce "leader of $OUTPUT-$p" "$(leader "$OUTPUT" "$p")"
  copiers_done && break
  bounce "leader of $INPUT-$(((p + 1) % PARTITIONS))" "$(leader "$INPUT" $(((p + 1) % PARTITIONS)))"
  copiers_done && break
  bounce "coordinator of group $GROUP" "$(coordinator __consumer_offsets "$GROUP")"
done
FAULT_END=$SECONDS

say "waiting (up to ${COPY_TIMEOUT} s) for every copier to finish"
if wait_for "$COPY_TIMEOUT" copiers_done; then
  result "txn-copier $KIND copiers-finished"
else
  result "txn-copier $KIND copiers-finished" "not all done after ${COPY_TIMEOUT} s: $(ls "$WORK" | grep -c '\.done$') of $PARTITIONS"
fi
COPY_SECONDS=$((SECONDS - COPY_START))
RUNS=0
for partition in $(seq 0 $((PARTITIONS - 1))); do
  RUNS=$((RUNS + $(cat "$WORK/copier-$partition.runs" 2>/dev/null || echo 0)))
done

# check FILE: what a read_committed read of the output missed or holds twice, against the
# input; per partition the output must be the input in order.
check() {
  python3 - "$WORK/input.txt" "$1" <<'EOF'
import sys
from collections import Counter, defaultdict
def load(path):
    parts = defaultdict(list)
    for line in open(path):
        p, v = line.split()
        parts[p].append(v)
    return parts
inp, out = load(sys.argv[1]), load(sys.argv[2])
want = Counter(v for vs in inp.values() for v in vs)
got = Counter(v for vs in out.values() for v in vs)
missing = [v for v in want if v not in got]
dups = [v for v, n in got.items() if n > 1]
extra = [v for v in got if v not in want]
problems = []
if missing: problems.append(f"{len(missing)} missing (e.g. {sorted(missing, key=int)[:5]})")
if dups: problems.append(f"{len(dups)} duplicated (e.g. {sorted(dups, key=int)[:5]})")
if extra: problems.append(f"{len(extra)} never in the input (e.g. {extra[:5]})")
if not problems:
    for p in inp:
        if out.get(p, []) != inp[p]:
            problems.append(f"partition {p} is not the input partition in order")
print("ok" if not problems else "; ".join(problems))
EOF
}

kcat -C -b "$BOOTSTRAP" -t "$OUTPUT" -o beginning -e -q -X isolation.level=read_committed \
  -f '%p %s\n' >"$WORK/output.txt" 2>"$LOGS/output-read.log" || true
outcome="$(check "$WORK/output.txt")"
if [[ "$outcome" == ok ]]; then
  result "txn-copier $KIND read-committed-output-exactly-once-in-order"
else
  result "txn-copier $KIND read-committed-output-exactly-once-in-order" "$outcome ($(wc -l <"$WORK/output.txt") read; kcat: $(tail -1 "$LOGS/output-read.log"))"
fi
# The live reader: until it read as many records as there are (or 60 s).
wait_for 60 sh -c "[ \$(wc -l <'$WORK/live.txt') -ge $RECORDS ]" || true
sleep 1
kill "$LIVE_PID" 2>/dev/null || true
wait "$LIVE_PID" 2>/dev/null || true
LIVE_PID=""
outcome="$(check "$WORK/live.txt")"
if [[ "$outcome" == ok ]]; then
  result "txn-copier $KIND live-read-committed-consumer-exactly-once-in-order"
else
  result "txn-copier $KIND live-read-committed-consumer-exactly-once-in-order" "$outcome ($(wc -l <"$WORK/live.txt") read)"
fi
# Everything in the output log, aborted transactions and markers' offsets aside: how much was
# written and thrown away.
kcat -C -b "$BOOTSTRAP" -t "$OUTPUT" -o beginning -e -q -X isolation.level=read_uncommitted -f '%s\n' 2>/dev/null >"$WORK/uncommitted.txt" || true
echo "txn-copier $KIND: $RECORDS records, $PARTITIONS copiers (transaction size $TXN_SIZE), copied in $COPY_SECONDS s$( ((ROUNDS == 0)) || echo " ($((FAULT_END - COPY_START)) s of fault rounds)"), $RUNS copier runs, $BROKER_KILLS broker kills, $COPIER_KILLS copier kills, $(wc -l <"$WORK/uncommitted.txt") records in the output read_uncommitted (aborted ones included), $((SECONDS - START)) s in all"
if [[ -s "$FAULTS_LOG" ]]; then sed 's/^/  /' "$FAULTS_LOG"; fi
if [[ -s "$LOGS/copier-restarts.log" ]]; then sed 's/^/  /' "$LOGS/copier-restarts.log"; fi
echo "txn-copier $KIND: $PASSED passed, $FAILED failed"
((FAILED == 0))
