#!/usr/bin/env bash
# Consumer groups, scenario 1: two `kcat -G` members (librdkafka's balanced consumer, eager
# range assignment, auto-commit) on a 6-partition topic.
#   groups-kcat-share        both members hold partitions, none twice, all 6 covered (from
#                            kcat's own rebalance messages on stderr)
#   groups-kcat-exactly-once 300 records produced after the group settled are consumed
#                            exactly once between them, each by the member owning its partition
#   groups-kcat-leave        one member leaves (SIGTERM: commit, LeaveGroup); the other gets all
#                            6 partitions and consumes the next 300 records, and nothing of the
#                            first 300 again (the leaver committed before leaving)
#
# usage: compat-tests/groups/kcat-group.sh BOOTSTRAP WORKDIR [PYTHON]
# Prints 'PASS name' / 'FAIL name: reason' per check on stdout; details go to WORKDIR.
set -euo pipefail
BOOTSTRAP="$1"
WORK="$2"
PY="${3:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$WORK"
RUN="$(date +%s)-$$"
TOPIC="groups-kcat-$RUN"
GROUP="groups-kcat-$RUN"
N=300
ALL="0 1 2 3 4 5"

# result NAME [FAILURE-TEXT] (empty: pass), counted in FAILED; wait_for
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
members=()
cleanup() { for pid in "${members[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 143' TERM INT # a timeout's SIGTERM still stops the members

# member NAME: a kcat -G member, records as 'partition offset value' lines in WORK/NAME.out,
# kcat's messages (rebalances) in WORK/NAME.err. No -o: with -G it would force that offset on
# every assignment; auto.offset.reset=earliest only applies where nothing is committed.
member() {
  timeout 170 kcat -b "$BOOTSTRAP" -G "$GROUP" "$TOPIC" -u -f '%p %o %s\n' -m 10 \
    -X auto.offset.reset=earliest -X session.timeout.ms=10000 -X heartbeat.interval.ms=1000 \
    >"$WORK/$1.out" 2>"$WORK/$1.err" &
  members+=($!)
}

# assigned NAME: the member's current partitions, sorted, from its last rebalance message
# ('% Group G rebalanced (memberid M): assigned: T [0], T [3]' or '...: revoked: ...').
assigned() {
  awk '/rebalanced .*: assigned: /{a=$0} /rebalanced .*: revoked: /{a=""} END{print a}' "$WORK/$1.err" |
    sed 's/.*assigned: //' | grep -o '\[[0-9]*\]' | tr -d '[]' | sort -n | tr '\n' ' ' | sed 's/ $//'
}


# Both members hold partitions, disjoint, together all six.
shared() {
  local a b
  a="$(assigned a)" b="$(assigned b)"
  [[ -n "$a" && -n "$b" ]] && [[ "$(echo "$a $b" | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')" == "$ALL" ]]
}
all_consumed() { # PREFIX FILE...: every record PREFIX-1..N appears in the FILEs
  local prefix="$1"
  shift
  (($(cat "$@" 2>/dev/null | awk -v p="$prefix-" 'index($3, p) == 1 {print $3}' | sort -u | wc -l) >= N))
}
produce() { # PREFIX: N keyed records 'PREFIX-i', keys spread over the partitions
  seq 1 "$N" | awk -v p="$1" '{print "key" $1 ":" p "-" $1}' |
    timeout 60 kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -K : -m 10 2>>"$WORK/produce.err"
}

if ! why="$("$PY" "$HERE/admin.py" create "$BOOTSTRAP" "$TOPIC" 6 2>&1)"; then
  echo "FAIL groups-kcat-share: could not create the topic: $(echo "$why" | tail -n 1)"
  exit 1
fi

member a
has_partitions() { [[ -n "$(assigned "$1")" ]]; }
holds_all() { [[ "$(assigned "$1")" == "$ALL" ]]; }
wait_for 30 has_partitions a || true
member b
if ! wait_for 30 shared; then
  result groups-kcat-share "after 30 s member a holds [$(assigned a)], b holds [$(assigned b)]; expected both non-empty, disjoint, together [$ALL]; $(grep -h -i -E 'error|fail' "$WORK"/a.err "$WORK"/b.err | head -n 2 | tr '\n' ' ')"
  exit 1
fi
A1="$(assigned a)" B1="$(assigned b)"
result groups-kcat-share ""

# Phase 1: every record exactly once, by the member that owns its partition.
P1="$RUN-one"
produce "$P1"
wait_for 30 all_consumed "$P1" "$WORK/a.out" "$WORK/b.out" || true
why=""
dups="$(cat "$WORK/a.out" "$WORK/b.out" | awk -v p="$P1-" 'index($3, p) == 1 {print $3}' | sort | uniq -d | head -n 3 | tr '\n' ' ')"
got="$(cat "$WORK/a.out" "$WORK/b.out" | awk -v p="$P1-" 'index($3, p) == 1 {print $3}' | sort -u | wc -l)"
wrong="$(awk -v own=" $A1 " -v p="$P1-" 'index($3, p) == 1 && index(own, " " $1 " ") == 0' "$WORK/a.out" | head -n 2 | tr '\n' ' ')"
wrong+="$(awk -v own=" $B1 " -v p="$P1-" 'index($3, p) == 1 && index(own, " " $1 " ") == 0' "$WORK/b.out" | head -n 2 | tr '\n' ' ')"
if ((got < N)); then why="consumed $got of $N records within 30 s"; fi
if [[ -n "$dups" ]]; then why="${why:+$why; }consumed twice: $dups"; fi
if [[ -n "$wrong" ]]; then why="${why:+$why; }records from partitions the member does not own (a [$A1], b [$B1]): $wrong"; fi
result groups-kcat-exactly-once "$why"

# Phase 2: b leaves cleanly; a takes over its partitions from b's committed offsets.
kill -TERM "${members[1]}" 2>/dev/null || true
left=1
exited() { ! kill -0 "$1" 2>/dev/null; }
wait_for 15 exited "${members[1]}" || left=""
t0=$SECONDS
if ! wait_for 20 holds_all a; then
  result groups-kcat-leave "$([[ -n "$left" ]] || echo "member b did not exit within 15 s of SIGTERM; ")member a holds [$(assigned a)] 20 s after b left, expected [$ALL]"
  exit 1
fi
moved=$((SECONDS - t0))
P2="$RUN-two"
produce "$P2"
wait_for 30 all_consumed "$P2" "$WORK/a.out" || true
why=""
got="$(awk -v p="$P2-" 'index($3, p) == 1 {print $3}' "$WORK/a.out" | sort -u | wc -l)"
dups="$(awk -v p="$P2-" 'index($3, p) == 1 {print $3}' "$WORK/a.out" | sort | uniq -d | head -n 3 | tr '\n' ' ')"
again="$(cat "$WORK/a.out" "$WORK/b.out" | awk -v p="$P1-" 'index($3, p) == 1 {print $3}' | sort | uniq -d | head -n 3 | tr '\n' ' ')"
if ((got < N)); then why="member a consumed $got of the $N records produced after b left, within 30 s"; fi
if [[ -n "$dups" ]]; then why="${why:+$why; }consumed twice: $dups"; fi
if [[ -n "$again" ]]; then why="${why:+$why; }records of b's partitions consumed again after b left (was b's commit lost?): $again"; fi
echo "b's partitions moved to a ${moved} s after b exited" >&2
# A LeaveGroup rebalances at once; only a lost leave waits for b's session timeout (10 s).
if ((moved >= 8)); then why="${why:+$why; }b's partitions moved only ${moved} s after it left (session expiry, not its LeaveGroup?)"; fi
result groups-kcat-leave "$why"

exit $((FAILED > 0))
