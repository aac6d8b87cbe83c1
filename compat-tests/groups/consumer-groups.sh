#!/usr/bin/env bash
# Consumer groups, scenario 4: Apache Kafka's kafka-consumer-groups tool (ConsumerGroupCommand of
# scripts/kafka.sh) on a group whose offsets a kcat -G member committed. Expected numbers come
# from other clients (kcat's produce counts, OffsetFetch and ListOffsets through confluent-kafka).
#   groups-cli-list              --list shows the group
#   groups-cli-describe          --describe --group G: per partition CURRENT-OFFSET = committed,
#                                LOG-END-OFFSET = high watermark, LAG = the difference (7, 0, 5)
#   groups-cli-reset-offsets     --reset-offsets --to-earliest --execute on the inactive group sets
#                                every committed offset to 0; a member of G then reads everything
#                                again from the start
#   groups-cli-describe-members  --describe --members while that member runs: it holds all 3
#                                partitions
#   groups-cli-delete            --delete --group G on the empty group: gone from --list, no
#                                committed offsets left
#
# usage: compat-tests/groups/consumer-groups.sh BOOTSTRAP WORKDIR [PYTHON]
# Prints 'PASS name' / 'FAIL name: reason' per check on stdout; tool output goes to WORKDIR.
set -euo pipefail
BOOTSTRAP="$1"
WORK="$2"
PY="${3:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA="$HERE/../../scripts/kafka.sh"
mkdir -p "$WORK"
RUN="$(date +%s)-$$"
TOPIC="groups-cli-$RUN"
GROUP="groups-cli-$RUN"
CGC=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand

# result NAME [FAILURE-TEXT] (empty: pass), counted in FAILED; wait_for
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
member=""
trap '[[ -z "$member" ]] || kill "$member" 2>/dev/null || true' EXIT
trap 'exit 143' TERM INT # a timeout's SIGTERM still stops the member

cgc() { # LOG ARGS...: run kafka-consumer-groups (bounded), output to WORKDIR/LOG
  local log="$WORK/$1"
  shift
  timeout 90 "$KAFKA" tool "$CGC" --bootstrap-server "$BOOTSTRAP" "$@" >"$log" 2>&1
}
first_error() { # the most telling line of a tool's log
  grep -m1 -oE 'org\.apache\.kafka\.common\.errors\.[A-Za-z]+: .*' "$WORK/$1" | cut -c1-300 ||
    grep -m1 -E 'Error|ERROR|Exception' "$WORK/$1" | cut -c1-300 ||
    tail -n 2 "$WORK/$1" | tr '\n' ' ' | cut -c1-300
}
produce() { # PARTITION COUNT TAG
  seq 1 "$2" | sed "s/^/$3-$1-/" | timeout 60 kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -p "$1" -m 10 2>>"$WORK/produce.err"
}
committed() { "$PY" "$HERE/admin.py" committed "$BOOTSTRAP" "$GROUP" "$TOPIC" 2>>"$WORK/admin.err"; }
ends() { "$PY" "$HERE/admin.py" ends "$BOOTSTRAP" "$TOPIC" 2>>"$WORK/admin.err"; }

# start_member LOG: a kcat -G member of GROUP; auto-commits, commits and leaves on SIGTERM.
start_member() {
  timeout 120 kcat -b "$BOOTSTRAP" -G "$GROUP" "$TOPIC" -u -f '%p %o %s\n' -m 10 \
    -X auto.offset.reset=earliest -X heartbeat.interval.ms=1000 -X auto.commit.interval.ms=1000 \
    >"$WORK/$1.out" 2>"$WORK/$1.err" &
  member=$!
}
stop_member() {
  kill -TERM "$member" 2>/dev/null || true
  wait "$member" 2>/dev/null || true
  member=""
}
at_end() { # LOG P END: the member of LOG reported the end of partition P at offset END
  grep -q "Reached end of topic $TOPIC \[$2\] at offset $3\$" "$WORK/$1.err"
}

# Setup: 10, 20, 30 records; a member reads all and commits; then 7 and 5 more records.
if ! why="$("$PY" "$HERE/admin.py" create "$BOOTSTRAP" "$TOPIC" 3 2>&1)"; then
  echo "FAIL groups-cli-list: could not create the topic: $(echo "$why" | tail -n 1)"
  exit 1
fi
produce 0 10 a
produce 1 20 a
produce 2 30 a
start_member first
read_all() { at_end "$1" 0 "$2" && at_end "$1" 1 "$3" && at_end "$1" 2 "$4"; } # LOG END0 END1 END2
wait_for 45 read_all first 10 20 30 || true
stop_member
setup="$(committed)"
if [[ "$setup" != '{"0": 10, "1": 20, "2": 30}' ]]; then
  setup_problem="setup: a kcat -G member read 10/20/30 records and stopped; committed offsets are ${setup:-unreadable}, expected {0: 10, 1: 20, 2: 30} ($(grep -v '^% Reached' "$WORK/first.err" | tail -n 2 | tr '\n' ' '))"
else
  setup_problem=""
fi
produce 0 7 b
produce 2 5 b

# --list
if cgc list.log --list; then
  if grep -qx "$GROUP" "$WORK/list.log"; then
    result groups-cli-list ""
  else
    result groups-cli-list "$GROUP is not in the list: $(head -c 300 "$WORK/list.log" | tr '\n' ' ')"
  fi
else
  result groups-cli-list "--list failed: $(first_error list.log)"
fi

# --describe: CURRENT-OFFSET LOG-END-OFFSET LAG per partition.
if cgc describe.log --describe --group "$GROUP"; then
  committed_now="$(committed)"
  ends_now="$(ends)"
  why="$("$PY" - "$WORK/describe.log" "$GROUP" "$TOPIC" "$committed_now" "$ends_now" <<'EOF'
import json, sys
log, group, topic, committed, ends = sys.argv[1:]
committed = {int(p): o for p, o in json.loads(committed or "{}").items()}
ends = {int(p): o for p, o in json.loads(ends or "{}").items()}
rows = {}
for line in open(log):
    f = line.split()
    if len(f) >= 6 and f[0] == group and f[1] == topic:
        rows[int(f[2])] = f[3:6]
problems = []
for p, lag_expected in ((0, 7), (1, 0), (2, 5)):
    if p not in rows:
        problems.append(f"no row for partition {p}")
        continue
    cur, end, lag = rows[p]
    want = [str(committed.get(p)), str(ends.get(p)), str(ends.get(p, 0) - committed.get(p, 0))]
    if [cur, end, lag] != want or lag != str(lag_expected):
        problems.append(f"partition {p}: CURRENT-OFFSET {cur} LOG-END-OFFSET {end} LAG {lag}; "
                        f"committed {committed.get(p)}, log end {ends.get(p)}, so lag {want[2]} (expected {lag_expected})")
print("; ".join(problems))
EOF
)"
  [[ -z "$why" || -z "$setup_problem" ]] || why="$why; $setup_problem"
  [[ -n "$why" ]] && why="$why (output: $(grep -v '^$' "$WORK/describe.log" | tail -n 4 | tr -s ' ' | tr '\n' '|' | cut -c1-400))"
  result groups-cli-describe "$why"
else
  result groups-cli-describe "--describe failed: $(first_error describe.log)"
fi

# --reset-offsets --to-earliest --execute (the group has no members), then a member re-reads.
if cgc reset.log --reset-offsets --group "$GROUP" --topic "$TOPIC" --to-earliest --execute; then
  why=""
  rows="$(awk -v g="$GROUP" -v t="$TOPIC" '$1 == g && $2 == t {print $3 "=" $4}' "$WORK/reset.log" | sort | tr '\n' ' ')"
  [[ "$rows" == "0=0 1=0 2=0 " ]] || why="the tool printed NEW-OFFSET rows [$rows], expected 0=0 1=0 2=0"
  after="$(committed)"
  [[ "$after" == '{"0": 0, "1": 0, "2": 0}' ]] || why="${why:+$why; }committed offsets after the reset: ${after:-unreadable}"
  start_member again
  wait_for 45 read_all again 17 20 35 || true
  read_total="$(wc -l <"$WORK/again.out")"
  read_unique="$(sort -u "$WORK/again.out" | wc -l)"
  firsts="$(awk '!($1 in f) {f[$1] = $2} END {for (p in f) print p "@" f[p]}' "$WORK/again.out" | sort | tr '\n' ' ')"
  if ((read_total != 72 || read_unique != 72)) || [[ "$firsts" != "0@0 1@0 2@0 " ]]; then
    why="${why:+$why; }after the reset a member read $read_total records ($read_unique distinct) starting at [$firsts], expected all 72 from offset 0"
  fi
  result groups-cli-reset-offsets "$why"
else
  result groups-cli-reset-offsets "--reset-offsets failed: $(first_error reset.log)"
  start_member again
fi

# --describe --members while the member runs: one member holding the 3 partitions.
wait_for 30 grep -q 'assigned: ' "$WORK/again.err" || true
if cgc members.log --describe --group "$GROUP" --members; then
  rows="$(awk -v g="$GROUP" '$1 == g' "$WORK/members.log")"
  if [[ "$(echo "$rows" | grep -c .)" == 1 && "$(echo "$rows" | awk '{print $NF}')" == 3 ]]; then
    result groups-cli-describe-members ""
  else
    result groups-cli-describe-members "expected one member with #PARTITIONS 3: $(grep -v '^$' "$WORK/members.log" | tr -s ' ' | tr '\n' '|' | cut -c1-400)"
  fi
else
  result groups-cli-describe-members "--describe --members failed: $(first_error members.log)"
fi
stop_member

# --delete on the now empty group.
if cgc delete.log --delete --group "$GROUP"; then
  why=""
  grep -q "Deletion of requested consumer groups ('$GROUP') was successful" "$WORK/delete.log" ||
    why="unexpected output: $(head -c 300 "$WORK/delete.log" | tr '\n' ' ')"
  cgc list-after.log --list || why="${why:+$why; }--list failed after the delete: $(first_error list-after.log)"
  ! grep -qx "$GROUP" "$WORK/list-after.log" || why="${why:+$why; }the group is still listed"
  left="$(committed)"
  [[ "$left" == "{}" ]] || why="${why:+$why; }committed offsets after the delete: ${left:-unreadable}"
  result groups-cli-delete "$why"
else
  result groups-cli-delete "--delete failed: $(first_error delete.log)"
fi

exit $((FAILED > 0))
