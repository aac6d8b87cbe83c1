#!/usr/bin/env bash
# Scenario 4: Apache Kafka's own command-line tools (from scripts/kafka.sh) against a broker:
# kafka-topics --create/--describe/--alter, kafka-console-producer, kafka-console-consumer.
# Each check that can be is verified with an independent client (kcat), so one missing API
# does not hide another.
#
# usage: compat-tests/cli/cli.sh BOOTSTRAP WORKDIR
# Prints 'PASS name' / 'FAIL name: reason' per check on stdout; tool output goes to WORKDIR.
set -euo pipefail
BOOTSTRAP="$1"
WORK="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA="$ROOT/scripts/kafka.sh"
mkdir -p "$WORK"
TOPIC="cli-$(date +%s)-$$"
LINES=20

# result NAME [FAILURE-TEXT] (empty: pass), counted in FAILED; wait_for
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
# tool LOG CLASS ARGS...: run a Kafka tool (bounded), output to WORKDIR/LOG
tool() {
  local log="$WORK/$1"
  shift
  timeout 90 "$KAFKA" tool "$@" >"$log" 2>&1
}
# The most telling error line a tool printed (for a FAIL reason): a Kafka error class (the
# root cause, e.g. UnsupportedVersionException), any exception, any error line, the last lines.
first_error() {
  grep -m1 -oE 'org\.apache\.kafka\.common\.errors\.[A-Za-z]+: .*' "$WORK/$1" | cut -c1-300 ||
    grep -m1 -E '^([a-z]+\.)+[A-Za-z]*(Exception|Error): ' "$WORK/$1" | cut -c1-300 ||
    grep -m1 -E 'Error|ERROR|Exception' "$WORK/$1" | cut -c1-300 ||
    tail -n 2 "$WORK/$1" | tr '\n' ' ' | cut -c1-300
}
# Partition count of TOPIC as a plain Metadata request (kcat -L) reports it.
partitions() {
  timeout 30 kcat -b "$BOOTSTRAP" -L -t "$TOPIC" -m 10 2>/dev/null |
    sed -n 's/.*topic "'"$TOPIC"'" with \([0-9]*\) partitions.*/\1/p'
}
# All values in TOPIC, one per line, sorted (kcat, partition by partition).
values_by_kcat() {
  local n
  n="$(partitions)"
  for ((p = 0; p < ${n:-0}; p++)); do
    timeout 30 kcat -b "$BOOTSTRAP" -C -t "$TOPIC" -p "$p" -o beginning -e -m 10 -q -f '%s\n' || true
  done | sort
}

# kafka-topics --create --partitions 4 (CreateTopics)
if tool create.log org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --create --topic "$TOPIC" --partitions 4 --replication-factor 1; then
  n="$(partitions)"
  if [[ "$n" == 4 ]]; then result cli-topics-create ""; else result cli-topics-create "Metadata shows ${n:-no} partitions, expected 4"; fi
else
  result cli-topics-create "kafka-topics --create failed: $(first_error create.log)"
fi

# kafka-topics --describe (Metadata or DescribeTopicPartitions, and DescribeConfigs)
if tool describe.log org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --describe --topic "$TOPIC"; then
  if grep -q "PartitionCount: 4" "$WORK/describe.log" &&
    [[ "$(grep -c "Topic: ${TOPIC}[[:space:]]*Partition: [0-3][[:space:]]" "$WORK/describe.log")" == 4 ]]; then
    result cli-topics-describe ""
  else
    result cli-topics-describe "unexpected output: $(head -c 300 "$WORK/describe.log" | tr '\n\t' '  ')"
  fi
else
  result cli-topics-describe "kafka-topics --describe failed: $(first_error describe.log)"
fi

# kafka-console-producer: lines in, checked by reading every partition with kcat.
seq -f "console line %g" 1 "$LINES" >"$WORK/lines.txt"
sort "$WORK/lines.txt" >"$WORK/lines.sorted"
tool producer.log org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" \
  --topic "$TOPIC" <"$WORK/lines.txt" || true
values_by_kcat >"$WORK/produced.sorted"
if cmp -s "$WORK/lines.sorted" "$WORK/produced.sorted"; then
  result cli-console-producer ""
else
  result cli-console-producer "topic holds $(wc -l <"$WORK/produced.sorted") of the $LINES lines: $(first_error producer.log)"
fi

# kafka-console-consumer --from-beginning --max-messages N (subscribes with a consumer group).
# If the console producer failed, kcat writes the lines, so this check stands on its own.
if [[ ! -s "$WORK/produced.sorted" ]]; then
  timeout 30 kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -m 10 -l "$WORK/lines.txt" 2>"$WORK/kcat-produce.log" || true
  values_by_kcat >"$WORK/produced.sorted"
fi
tool consumer.log org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
  --topic "$TOPIC" --from-beginning --max-messages "$LINES" --timeout-ms 20000 || true
grep '^console line ' "$WORK/consumer.log" | sort >"$WORK/consumed.sorted" || true
if cmp -s "$WORK/produced.sorted" "$WORK/consumed.sorted" && [[ -s "$WORK/consumed.sorted" ]]; then
  result cli-console-consumer ""
else
  result cli-console-consumer "read $(wc -l <"$WORK/consumed.sorted") of the $(wc -l <"$WORK/produced.sorted") records in the topic: $(first_error consumer.log)"
fi

# kafka-topics --alter --partitions 6 (CreatePartitions), checked with Metadata.
if tool alter.log org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --alter --topic "$TOPIC" --partitions 6; then
  n="$(partitions)"
  if [[ "$n" == 6 ]]; then result cli-topics-alter-partitions ""; else result cli-topics-alter-partitions "Metadata shows ${n:-no} partitions, expected 6"; fi
else
  result cli-topics-alter-partitions "kafka-topics --alter failed: $(first_error alter.log)"
fi

exit $((FAILED > 0))
