#!/usr/bin/env bash
# A Kafka Streams 4.x word count (at-least-once, or exactly_once_v2 with
# STREAMS_GUARANTEE=exactly_once_v2: its checks are then named streams-eos-*, and the output
# is read read_committed) gives exact counts.
#
#   compat-tests/streams.sh lmq|kafka [--binary PATH] [--bootstrap HOST:PORT]
#
# compat-tests/streams/WordCount.java (compiled with javac against `scripts/kafka.sh
# streams-classpath` into $LMQ_CACHE/compat-streams/<hash of source + jars>) produces a known
# text (STREAMS_LINES lines, default 3,000, of words drawn unevenly from a few hundred, so most
# repeat many times) to a 3-partition input topic; its topology splits lines into words,
# groups them by word (a repartition topic) and counts them (a state store whose changelog
# topic Streams creates with cleanup.policy=compact), every count update going to an output
# topic. The expected counts are computed here with tr/sort/uniq, not by Streams. The 180 s
# bound is for the whole run. Checks, as
# PASS/FAIL lines, then `N passed, M failed`:
#   streams-input-produced   the text is in the input topic (acks=all)
#   streams-wordcount-exact  the output's latest count of every word equals the expected one,
#                            no other word (within 180 s)
#   streams-internal-topics  the changelog topic is compact and the repartition topic delete
#                            (DescribeConfigs), 3 partitions each
#   streams-repartition-purged  Streams deleted the consumed records of the repartition topic
#                            (DeleteRecords, every 1 s here): log start offsets = log ends
#   streams-close            KafkaStreams.close() finishes within 30 s, no thread crashed
#   streams-restored-from-changelog  a third as many lines more are produced and the app is
#                            started again on an empty state dir: it restores records from the
#                            changelog topic (a StateRestoreListener counts them)
#   streams-restart-exact    the latest counts are those of both texts (restored + new)
#   streams-restart-close    as streams-close
# A fresh broker of the kind is started unless --bootstrap names one (compat-tests/apps-lib.sh).
# The app's log (log4j2, INFO) stays in the work dir (/tmp/lmq-streams-KIND.*) on a failure or
# with LMQ_COMPAT_KEEP=1; a failure prints its tail.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/streams.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=compat-tests/apps-lib.sh
source "$HERE/apps-lib.sh"

LINES="${STREAMS_LINES:-3000}"
CLASSPATH_STREAMS="$("$KAFKA" streams-classpath)"

SOURCE="$HERE/streams/WordCount.java"
HASH="$(cat "$SOURCE" <(echo "$CLASSPATH_STREAMS") <(ls "${CLASSPATH_STREAMS%\*}") | sha256sum | cut -c1-16)"
CLASSES="$LMQ_CACHE/compat-streams/$HASH"
if [[ ! -d "$CLASSES" ]]; then
  say "compiling $SOURCE into $CLASSES"
  rm -rf "$CLASSES.tmp"
  mkdir -p "$CLASSES.tmp"
  javac -d "$CLASSES.tmp" -cp "$CLASSPATH_STREAMS" "$SOURCE" >"$WORK/javac.log" 2>&1 ||
    { cat "$WORK/javac.log" >&2; die "javac failed"; }
  mv "$CLASSES.tmp" "$CLASSES"
fi

start_own_broker

# Named as the differential mode expects (compat-<family>-<scenario>-<suffix>).
APP_ID="compat-apps-streams-$RANDOM$RANDOM"
APP_LOG="$WORK/app/server.log"

# Words drawn unevenly (the square of a uniform number picks low indexes more often) from
# 400 made-up ones, 1-12 per line, fixed seeds: LINES lines, then a third as many more for the
# restart.
text() { # LINES SEED
  awk -v n="$1" -v seed="$2" 'BEGIN {
    srand(seed)
    for (i = 1; i <= n; i++) {
      line = ""
      words = 1 + int(rand() * 12)
      for (j = 0; j < words; j++) {
        r = rand()
        line = line (j ? " " : "") sprintf("w%03d", int(r * r * 400))
      }
      print line
    }
  }'
}
counts() { tr -s ' ' '\n' | grep -v '^$' | sort | uniq -c | awk '{print $2 " " $1}'; }
TEXT="$WORK/text.txt"
MORE_TEXT="$WORK/more-text.txt"
EXPECTED="$WORK/expected.txt"
EXPECTED_IN_THE_END="$WORK/expected-in-the-end.txt"
text "$LINES" 19 >"$TEXT"
text "$((LINES / 3))" 20 >"$MORE_TEXT"
counts <"$TEXT" >"$EXPECTED"
cat "$TEXT" "$MORE_TEXT" | counts >"$EXPECTED_IN_THE_END"
say "Kafka Streams word count ($APP_ID) against $KIND at $BOOTSTRAP: $LINES lines, $(counts <"$TEXT" | wc -l) distinct words, then $((LINES / 3)) more lines"

mkdir -p "$WORK/app"
write_log_config "$WORK/app-log4j2.properties" "$APP_LOG"
rc=0
timeout 300 java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$WORK/app-log4j2.properties" \
  -cp "$CLASSES:$CLASSPATH_STREAMS" WordCount "$BOOTSTRAP" "$APP_ID" "$TEXT" "$EXPECTED" \
  "$MORE_TEXT" "$EXPECTED_IN_THE_END" "$WORK/state" 180 >"$WORK/app/out.txt" 2>"$WORK/app/stderr.log" </dev/null || rc=$?
while IFS= read -r line; do
  case "$line" in
  "PASS "*) result "${line#PASS }" ;;
  "FAIL "*) line="${line#FAIL }"; result "${line%%:*}" "${line#*: }" ;;
  esac
done <"$WORK/app/out.txt"
if ((rc == 124)); then
  result streams-wordcount "the app did not finish within 300 s"
elif ((rc != 0 && FAILED == 0)); then
  result streams-wordcount "the app exited $rc: $(tail -n 3 "$WORK/app/stderr.log" | tr '\n' ' ')"
fi
if ! own_broker_alive; then
  result streams-broker-alive "the broker died (log $WORK/lmq.log: $(tail -n 3 "$WORK/lmq.log" | tr '\n' ' '))"
fi
((FAILED == 0)) || log_tail "$APP_LOG" >&2
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
