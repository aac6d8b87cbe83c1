#!/usr/bin/env bash
# Real Kafka clients against a 3-broker LMQ cluster on Consul (scripts/cluster.sh) while a
# partition leader is killed: confluent-kafka (librdkafka) produces and consumes through the
# failover without a restart; Kafka's VerifiableProducer (the Java client) produces through
# another kill while kcat consumes that topic live and produces to another one, and every
# acknowledged record is read; a restarted broker catches up;
# Kafka's kafka-reassign-partitions tool moves a replica (--execute, then --verify).
#
#   compat-tests/cluster.sh BINARY
#
# Prints 'PASS name' / 'FAIL name: reason' per scenario and, last, 'N passed, M failed';
# exits non-zero if anything failed. Installs what it needs like compat-tests/matrix.sh
# (compat-tests/prereqs.sh).
set -euo pipefail

[[ $# -eq 1 && -x "$1" ]] || { echo "usage: $0 BINARY   (e.g. target/debug/lmq)" >&2; exit 2; }
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/cluster.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA="$ROOT/scripts/kafka.sh"
PY="$LMQ_CACHE/venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-compat-cluster.XXXXXX")"
LOGS="$WORK/logs"
CLUSTER="$WORK/cluster"
mkdir -p "$LOGS"
cluster() { LMQ_BIN="$BINARY" "$ROOT/scripts/cluster.sh" "$@" --dir "$CLUSTER"; }

cleanup() {
  local rc=$?
  cluster down >/dev/null 2>&1 || true
  if ((FAILED > 0 || rc != 0)) || [[ -n "${LMQ_COMPAT_KEEP:-}" ]]; then
    echo "compat-tests/cluster.sh: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=compat-tests/prereqs.sh
source "$HERE/prereqs.sh"

# Restarts every broker that a scenario killed, so the next one starts with three.
restart_killed() {
  for dir in "$CLUSTER"/broker-*; do
    [[ -f "$dir/pid" ]] || cluster start "${dir##*-}"
  done
}

say "3 Consul servers + 3 brokers"
BOOTSTRAP="$(cluster up 3 | tail -1)"
say "bootstrap $BOOTSTRAP"

say "scenario confluent-kafka-failover"
if timeout 300 "$PY" "$HERE/python/failover.py" "$BOOTSTRAP" failover-python \
  env LMQ_BIN="$BINARY" "$ROOT/scripts/cluster.sh" --dir "$CLUSTER" >"$LOGS/python.log" 2>&1; then
  result confluent-kafka-failover
else
  result confluent-kafka-failover "failover.py failed: $(tail -3 "$LOGS/python.log" | tr '\n' ' ')"
fi
restart_killed

say "scenario java-verifiable-producer-failover"
# The broker restarted above may not be registered yet: creating with 3 replicas is refused
# until it is (and a producer would then auto-create the topic with fewer).
for _ in $(seq 1 30); do
  "$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
    --topic failover-java --partitions 3 --replication-factor 3 \
    --config min.insync.replicas=2 >"$LOGS/java-topic.log" 2>&1 && break
  grep -q "already exists" "$LOGS/java-topic.log" && break
  sleep 1
done
"$KAFKA" tool org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$BOOTSTRAP" \
  --topic failover-java --max-messages 3000 --throughput 200 --acks -1 \
  >"$LOGS/java-producer.jsonl" 2>"$LOGS/java-producer.log" &
JAVA_PID=$!
# kcat consumes the topic live and produces to another one, both across the same kill. It
# gives up on a topic its broker does not know yet, so first every broker must know it (a new
# topic reaches the others through their metadata watch, as in Kafka it reaches them later).
for broker in ${BOOTSTRAP//,/ }; do
  for _ in $(seq 1 100); do
    kcat -b "$broker" -L -t failover-java 2>/dev/null | grep -q 'with 3 partitions' && break
    sleep 0.1
  done
done
kcat -b "$BOOTSTRAP" -C -t failover-java -o beginning -q -f '%s\n' \
  >"$LOGS/kcat-live.txt" 2>"$LOGS/kcat-live.log" &
KCAT_CONSUMER=$!
"$PY" -c 'import sys, time
for i in range(1500):
    print(i, flush=True)
    time.sleep(0.01)' |
  kcat -b "$BOOTSTRAP" -P -t failover-kcat -X acks=all -X enable.idempotence=true \
    -X message.timeout.ms=120000 >"$LOGS/kcat-producer.log" 2>&1 &
KCAT_PRODUCER=$!
sleep 5
# The leader of partition 1 as the brokers report it.
VICTIM="$(kcat -b "$BOOTSTRAP" -L -t failover-java -J 2>/dev/null |
  "$PY" -c 'import json,sys; t=json.load(sys.stdin)["topics"][0]; print([p["leader"] for p in t["partitions"] if p["partition"]==1][0])')"
say "killing broker $VICTIM (leader of failover-java-1)"
cluster kill "$VICTIM"
if ! wait "$JAVA_PID"; then
  result java-verifiable-producer-failover "VerifiableProducer failed: $(tail -3 "$LOGS/java-producer.log" | tr '\n' ' ')"
else
  ACKED="$(grep -c '"name":"producer_send_success"' "$LOGS/java-producer.jsonl" || true)"
  kcat -b "$BOOTSTRAP" -C -t failover-java -o beginning -e -q -f '%s\n' >"$LOGS/java-read.txt" 2>"$LOGS/java-read.log" || true
  MISSING="$("$PY" - "$LOGS/java-producer.jsonl" "$LOGS/java-read.txt" <<'PYEOF'
import json, sys
acked = {json.loads(l)["value"] for l in open(sys.argv[1]) if '"producer_send_success"' in l}
read = [l.rstrip("\n") for l in open(sys.argv[2])]
dups = len(read) - len(set(read))
print(len(acked - set(read)), dups)
PYEOF
)"
  if [[ "$ACKED" -ge 2900 && "$MISSING" == "0 0" ]]; then
    result java-verifiable-producer-failover
  else
    result java-verifiable-producer-failover "$ACKED acknowledged; missing and duplicated: $MISSING"
  fi
fi

say "scenario kcat-failover"
wait "$KCAT_PRODUCER" || true
for _ in $(seq 1 30); do
  [[ "$(sort -u "$LOGS/kcat-live.txt" | wc -l)" -ge "$(sort -u "$LOGS/java-read.txt" 2>/dev/null | wc -l)" ]] && break
  sleep 1
done
kill "$KCAT_CONSUMER" 2>/dev/null || true
kcat -b "$BOOTSTRAP" -C -t failover-kcat -o beginning -e -q -f '%s\n' >"$LOGS/kcat-read.txt" 2>/dev/null || true
KCAT_CHECK="$("$PY" - "$LOGS/java-producer.jsonl" "$LOGS/kcat-live.txt" "$LOGS/kcat-read.txt" <<'PYEOF'
import json, sys
acked = {json.loads(l)["value"] for l in open(sys.argv[1]) if '"producer_send_success"' in l}
live = {l.rstrip("\n") for l in open(sys.argv[2])}
produced = {l.rstrip("\n") for l in open(sys.argv[3])}
print(len(acked - live), len(set(map(str, range(1500))) - produced))
PYEOF
)"
if grep -q "Delivery failed" "$LOGS/kcat-producer.log"; then
  result kcat-failover "kcat -P reported failed deliveries: $(grep -m2 'Delivery failed' "$LOGS/kcat-producer.log" | tr '\n' ' ')"
elif [[ "$KCAT_CHECK" == "0 0" ]]; then
  result kcat-failover
else
  result kcat-failover "records the live kcat consumer missed, and kcat -P records missing: $KCAT_CHECK"
fi

say "scenario restarted-broker-catches-up"
cluster start "$VICTIM"
CAUGHT_UP=""
for _ in $(seq 1 60); do
  if kcat -b "$BOOTSTRAP" -L -t failover-java 2>/dev/null | grep -q "isrs: .*$VICTIM"; then
    ISRS="$(kcat -b "$BOOTSTRAP" -L -t failover-java 2>/dev/null | grep -c "isrs: [0-9],[0-9],[0-9]" || true)"
    if [[ "$ISRS" == "3" ]]; then CAUGHT_UP=1; break; fi
  fi
  sleep 1
done
if [[ -n "$CAUGHT_UP" ]]; then
  result restarted-broker-catches-up
else
  result restarted-broker-catches-up "broker $VICTIM not back in every ISR after 60 s: $(kcat -b "$BOOTSTRAP" -L -t failover-java 2>&1 | tail -3 | tr '\n' ' ')"
fi

say "scenario kafka-reassign-partitions"
CURRENT="$(kcat -b "$BOOTSTRAP" -L -t failover-java -J 2>/dev/null |
  "$PY" -c 'import json,sys; t=json.load(sys.stdin)["topics"][0]; print(",".join(str(r["id"]) for r in [p for p in t["partitions"] if p["partition"]==0][0]["replicas"]))')"
# Drop one replica of partition 0: a new replica set in another order.
TARGET="$("$PY" -c 'import sys; r=sys.argv[1].split(","); print(",".join(reversed(r[:2])))' "$CURRENT")"
echo "{\"version\":1,\"partitions\":[{\"topic\":\"failover-java\",\"partition\":0,\"replicas\":[$TARGET]}]}" >"$WORK/plan.json"
REASSIGN=("$KAFKA" tool org.apache.kafka.tools.reassign.ReassignPartitionsCommand --bootstrap-server "$BOOTSTRAP" --reassignment-json-file "$WORK/plan.json")
if "${REASSIGN[@]}" --execute >"$LOGS/reassign.log" 2>&1; then
  DONE=""
  for _ in $(seq 1 30); do
    if "${REASSIGN[@]}" --verify >>"$LOGS/reassign.log" 2>&1 && grep -q "is completed" "$LOGS/reassign.log"; then DONE=1; break; fi
    sleep 2
  done
  NOW="$("$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --describe --topic failover-java 2>/dev/null | grep -o 'Partition: 0.*Replicas: [0-9,]*' | sed 's/.*Replicas: //')"
  if [[ -n "$DONE" && "$NOW" == "$TARGET" ]]; then
    result kafka-reassign-partitions
  else
    result kafka-reassign-partitions "replicas $CURRENT -> $NOW (wanted $TARGET): $(tail -3 "$LOGS/reassign.log" | tr '\n' ' ')"
  fi
else
  result kafka-reassign-partitions "--execute failed: $(tail -3 "$LOGS/reassign.log" | tr '\n' ' ')"
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
