#!/usr/bin/env bash
# Kafka Connect 4.x in distributed mode copies a file through a topic and back, exact.
#
#   compat-tests/connect.sh lmq|kafka [--binary PATH] [--bootstrap HOST:PORT]
#
# One Connect worker (org.apache.kafka.connect.cli.ConnectDistributed, jars from
# `scripts/kafka.sh connect-classpath`, 4.3.1) joins a group of its own with its config, offset and
# status topics (replication factor 1; Connect creates them compacted and refuses to start
# when the broker does not report them so) and serves its REST API on a free 127.0.0.1 port.
# Through that API (curl) it gets a FileStreamSource connector reading a file of
# CONNECT_LINES (default 5,000) distinct lines into a one-partition topic that Connect creates,
# and a FileStreamSink connector writing that topic to another file. Checks, as PASS/FAIL
# lines, then `N passed, M failed`:
#   connect-worker-started     REST answers and the worker joined its group
#   connect-connectors-created both connectors and their tasks RUNNING
#   connect-file-copied        the sink file has exactly the input's lines, in order
#   connect-connectors-deleted both deleted through the API
#   connect-worker-stopped     the worker exits within 30 s of SIGTERM, "Kafka Connect stopped"
# A fresh broker of the kind is started unless --bootstrap names one (compat-tests/apps-lib.sh).
# Every wait is bounded; a failure shows the worker's log tail. Logs stay in the work dir
# (/tmp/lmq-connect-KIND.*) on a failure or with LMQ_COMPAT_KEEP=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/connect.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=compat-tests/apps-lib.sh
source "$HERE/apps-lib.sh"

command -v curl >/dev/null || apt_install curl
LINES="${CONNECT_LINES:-5000}"
RESTART_LINES=1000
CLASSPATH_CONNECT="$("$KAFKA" connect-classpath)"
start_own_broker

# Named as the differential mode expects (compat-<family>-<scenario>-<suffix>).
RUN="compat-apps-connect-$RANDOM$RANDOM"
TOPIC="$RUN-lines"
INPUT="$WORK/input.txt"
OUTPUT="$WORK/output.txt"
WORKER_LOG="$WORK/worker/server.log"
REST_PORT="$(free_port)"
REST="http://127.0.0.1:$REST_PORT"

# The worker logs at INFO to WORKER_LOG, appended across its restart.
write_log_config "$WORK/worker-log4j2.properties" "$WORKER_LOG"

# Distinct lines of varied length and characters (spaces, tabs, punctuation). ASCII only: the
# source task stores its position in characters and resumes by skipping as many bytes, so
# after a restart a multi-byte character before that position would repeat lines (Kafka's
# FileStreamSourceTask does so on any broker); the lines added during the restart carry UTF-8.
awk -v n="$LINES" 'BEGIN {
  split("alpha beta gamma delta epsilon zeta eta theta iota kappa", w, " ")
  for (i = 1; i <= n; i++) {
    line = sprintf("%06d", i)
    for (j = 0; j < i % 13; j++) line = line " " w[(i * 7 + j) % 10 + 1]
    if (i % 5 == 0) line = line "\tcolumn, \"quoted\" & {braces}"
    print line
  }
}' >"$INPUT"

cat >"$WORK/worker.properties" <<EOF
bootstrap.servers=$BOOTSTRAP
group.id=$RUN
config.storage.topic=$RUN-configs
offset.storage.topic=$RUN-offsets
status.storage.topic=$RUN-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$REST_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$REST_PORT
plugin.discovery=service_load
# The sink's consumer must not auto-create the topic (with the broker's default partition
# count) before the source task creates it with one partition: on a fast sink it did, and
# the sink then read three partitions in another order (seen once on Apache Kafka).
consumer.allow.auto.create.topics=false
EOF

failed() { # CHECK WHY: the check fails, with the worker's log tail on stderr
  result "$1" "$2"
  log_tail "$WORKER_LOG" >&2
}

# rest METHOD PATH [JSON]: prints the body, HTTP status in REST_STATUS
rest() {
  local body=()
  [[ $# -lt 3 ]] || body=(-H 'Content-Type: application/json' --data "$3")
  REST_STATUS="$(curl -sS -m 30 -o "$WORK/rest.out" -w '%{http_code}' -X "$1" "${body[@]}" "$REST$2" 2>"$WORK/rest.err")" ||
    REST_STATUS="000"
  cat "$WORK/rest.out" 2>/dev/null || true
}

# Both connectors' state and their one task's, as 'STATE/STATE' per connector.
states() {
  local name out
  for name in "$RUN-source" "$RUN-sink"; do
    out="$(rest GET "/connectors/$name/status")"
    python3 -c 'import json,sys
try:
    s = json.loads(sys.argv[1]); t = s.get("tasks", [])
    print(s["connector"]["state"] + "/" + (t[0]["state"] if t else "NOTASK"), end=" ")
except Exception:
    print("UNKNOWN", end=" ")' "$out"
  done
}

# start_worker CHECK: starts the worker (its log appended to WORKER_LOG) and waits until its
# REST API answers with the worker in its group; 1 (CHECK failed) when it does not.
start_worker() {
  local check="$1" joined_before deadline=$((SECONDS + 120))
  joined_before="$(grep -c 'Joined group at generation' "$WORKER_LOG" 2>/dev/null || true)"
  java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$WORK/worker-log4j2.properties" \
    -cp "$CLASSPATH_CONNECT" org.apache.kafka.connect.cli.ConnectDistributed "$WORK/worker.properties" \
    >>"$WORK/worker/stdout.log" 2>&1 </dev/null &
  APP_PID=$!
  # The REST server answers before the worker has read its config topic and joined its
  # group; a new 'Joined group' line in the log says it has.
  until rest GET /connectors >/dev/null && [[ "$REST_STATUS" == 200 ]] &&
    (($(grep -c 'Joined group at generation' "$WORKER_LOG" 2>/dev/null || true) > joined_before)); do
    if ! alive "$APP_PID"; then
      failed "$check" "the worker exited during start-up ($(tail -n 3 "$WORK/worker/stdout.log" | tr '\n' ' '))"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      failed "$check" "no REST answer with the worker in its group within 120 s (last GET /connectors: HTTP $REST_STATUS)"
      return 1
    fi
    sleep 0.5
  done
}

# stop_worker CHECK: SIGTERM, up to 30 s for a clean exit.
stop_worker() {
  local pid="$APP_PID" stopped_before
  stopped_before="$(grep -c 'Kafka Connect stopped' "$WORKER_LOG" || true)"
  APP_PID=""
  if ! stop_pid "$pid" 30; then
    failed "$1" "the worker ignored SIGTERM for 30 s; killed"
  elif (($(grep -c 'Kafka Connect stopped' "$WORKER_LOG" || true) == stopped_before)); then
    failed "$1" "the worker exited without 'Kafka Connect stopped'"
  else
    result "$1"
    return 0
  fi
  return 1
}

# running CHECK: waits (60 s) until both connectors and their tasks are RUNNING.
running() {
  local deadline=$((SECONDS + 60))
  until [[ "$(states)" == "RUNNING/RUNNING RUNNING/RUNNING " ]]; do
    if ((SECONDS >= deadline)); then
      failed "$1" "connector/task states after 60 s: source, sink = $(states)"
      return 1
    fi
    sleep 0.5
  done
}

# copied CHECK: waits (120 s) until the sink file has as many lines as the input, then
# compares them.
copied() {
  local deadline=$((SECONDS + 120)) lines count
  lines="$(wc -l <"$INPUT")"
  while ((SECONDS < deadline)); do
    count="$(wc -l <"$OUTPUT" 2>/dev/null || echo 0)"
    ((count < lines)) || break
    own_broker_alive || break
    sleep 0.5
  done
  sleep 1 # anything beyond the input would have arrived with it
  count="$(wc -l <"$OUTPUT" 2>/dev/null || echo 0)"
  if ! own_broker_alive; then
    failed "$1" "the broker died (log $WORK/lmq.log: $(tail -n 3 "$WORK/lmq.log" | tr '\n' ' '))"
  elif ((count < lines)); then
    failed "$1" "the sink file has $count of $lines lines after 120 s; states: $(states)"
  elif ! cmp -s "$INPUT" "$OUTPUT"; then
    failed "$1" "the sink file differs from the input ($count lines, $lines expected; first difference: $(diff "$INPUT" "$OUTPUT" | head -n 3 | tr '\n' ' ' | cut -c1-300))"
  else
    result "$1"
    return 0
  fi
  return 1
}

run() {
  say "Kafka Connect worker ($RUN) against $KIND at $BOOTSTRAP, REST $REST"
  mkdir -p "$WORK/worker"
  start_worker connect-worker-started || return
  [[ "$(rest GET /connectors)" == "[]" ]] ||
    { failed connect-worker-started "a new worker lists connectors: $(cat "$WORK/rest.out")"; return; }
  result connect-worker-started

  local source sink name config deadline
  source="{\"name\":\"$RUN-source\",\"config\":{\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSourceConnector\",\"tasks.max\":\"1\",\"file\":\"$INPUT\",\"topic\":\"$TOPIC\",\"topic.creation.default.partitions\":\"1\",\"topic.creation.default.replication.factor\":\"1\"}}"
  sink="{\"name\":\"$RUN-sink\",\"config\":{\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSinkConnector\",\"tasks.max\":\"1\",\"file\":\"$OUTPUT\",\"topics\":\"$TOPIC\"}}"
  for config in "$source" "$sink"; do
    # 409: a rebalance is in progress; the worker asks to retry.
    deadline=$((SECONDS + 60))
    while rest POST /connectors "$config" >/dev/null && [[ "$REST_STATUS" != 201 ]]; do
      if [[ "$REST_STATUS" != 409 ]] || ((SECONDS >= deadline)); then
        failed connect-connectors-created "POST /connectors answered HTTP $REST_STATUS: $(cut -c1-300 "$WORK/rest.out")"
        return
      fi
      sleep 1
    done
  done
  running connect-connectors-created || return
  result connect-connectors-created
  copied connect-file-copied || return

  # A restart: the connectors come back from the config topic, the source resumes at the
  # position in the offsets topic and the sink at its group's committed offset, so the lines
  # added meanwhile are copied once, after the others.
  stop_worker connect-worker-stopped-for-restart || return
  awk -v from="$((LINES + 1))" -v n="$RESTART_LINES" 'BEGIN {
    for (i = from; i < from + n; i++) printf "%06d added while the worker was down: s\303\244ule \302\253%d\302\273\n", i, i
  }' >>"$INPUT"
  start_worker connect-worker-restarted || return
  running connect-worker-restarted || return
  result connect-worker-restarted
  copied connect-resumed-exact

  local gone=""
  for name in "$RUN-source" "$RUN-sink"; do
    rest DELETE "/connectors/$name" >/dev/null
    [[ "$REST_STATUS" == 204 ]] || gone="DELETE $name answered HTTP $REST_STATUS: $(cut -c1-200 "$WORK/rest.out")"
  done
  if [[ -z "$gone" ]]; then
    deadline=$((SECONDS + 30))
    until [[ "$(rest GET /connectors)" == "[]" ]]; do
      if ((SECONDS >= deadline)); then
        gone="GET /connectors still lists $(cat "$WORK/rest.out") 30 s after the deletes"
        break
      fi
      sleep 0.5
    done
  fi
  if [[ -n "$gone" ]]; then failed connect-connectors-deleted "$gone"; else result connect-connectors-deleted; fi
  stop_worker connect-worker-stopped
}

run
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
