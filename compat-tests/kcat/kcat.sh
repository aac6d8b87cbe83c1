#!/usr/bin/env bash
# Scenario 1: kcat (Debian's kcat on librdkafka). Binary keyed records with headers, produced
# with every compression codec and read back byte-identical at the acknowledged offsets, then
# the consumer start positions -o <offset>, -o s@<timestamp> and -o end.
#
# usage: compat-tests/kcat/kcat.sh BOOTSTRAP WORKDIR [PYTHON]
# Prints 'PASS name' / 'FAIL name: reason' per check on stdout; details go to WORKDIR.
set -euo pipefail
BOOTSTRAP="$1"
WORK="$2"
PY="${3:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v kcat >/dev/null || { echo "FAIL kcat: kcat is missing (apt-get install -y kcat)"; exit 1; }
mkdir -p "$WORK"
FORMAT='%p %o %T %K %S %h\n%k%s\n' # records.py FORMAT: header line, then key and value bytes
RUN="$(date +%s)-$$"                # topics unique per run, so a long-lived broker works too

# result NAME [FAILURE-TEXT] (empty: pass), counted in FAILED; wait_for
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

# produce TOPIC PARTITION CODEC INPUT HEADER...: delivery reports go to INPUT.dr
produce() {
  local topic="$1" partition="$2" codec="$3" input="$4"
  shift 4
  local hdrs=()
  for h in "$@"; do hdrs+=(-H "$h"); done
  timeout 60 kcat -b "$BOOTSTRAP" -P -t "$topic" -p "$partition" -z "$codec" -m 10 \
    -K '\x1f' -D '\x1e' "${hdrs[@]}" -l "$input" -vvv 2>"$input.dr" || true
}

# consume TOPIC PARTITION OFFSET OUT: read from OFFSET to the end of the partition
consume() {
  timeout 60 kcat -b "$BOOTSTRAP" -C -t "$1" -p "$2" -o "$3" -e -m 10 -f "$FORMAT" >"$4" 2>"$4.err" || true
}

# check NAME INPUT DR CONSUMED PARTITION HEADERS [FIRST]
check() {
  local name="$1"
  shift
  result "$name" "$("$PY" "$HERE/records.py" check "$@" 2>&1 | head -c 600 | tr '\n' ' ')"
}

# 1. Every codec: 3 partitions x 40 records, each partition its own kcat -P call.
for codec in none gzip snappy lz4 zstd; do
  topic="kcat-$codec-$RUN"
  why=""
  for p in 0 1 2; do
    in="$WORK/$codec-p$p.in"
    "$PY" "$HERE/records.py" gen "$in" 40 "$p$((RANDOM))"
    produce "$topic" "$p" "$codec" "$in" "codec=$codec" "part=$p"
    consume "$topic" "$p" beginning "$in.out"
    why="$("$PY" "$HERE/records.py" check "$in" "$in.dr" "$in.out" "$p" "codec=$codec,part=$p" 2>&1 | head -c 600 | tr '\n' ' ')"
    if [[ -n "$why" ]]; then
      why="partition $p: $why"
      break
    fi
  done
  result "kcat-roundtrip-$codec" "$why"
done

# 2. Start positions, on partition 0 of one topic: batch A, a timestamp T, batch B.
topic="kcat-offsets-$RUN"
W="$WORK/offsets"
mkdir -p "$W"
"$PY" "$HERE/records.py" gen "$W/a.in" 10 11
"$PY" "$HERE/records.py" gen "$W/b.in" 10 12
"$PY" "$HERE/records.py" gen "$W/c.in" 5 13
produce "$topic" 0 lz4 "$W/a.in" phase=ab
sleep 0.05
T="$(date +%s%3N)"
sleep 0.05
produce "$topic" 0 lz4 "$W/b.in" phase=ab
cat "$W/a.in" "$W/b.in" >"$W/ab.in"
cat "$W/a.in.dr" "$W/b.in.dr" >"$W/ab.in.dr"

# -o <offset>: from the 5th record of A on, A's tail and all of B.
offset4="$(sed -n 's/.*Message delivered to partition 0 (offset \([0-9]*\)).*/\1/p' "$W/a.in.dr" | sed -n 5p)"
if [[ -z "$offset4" ]]; then
  result kcat-offset-absolute "producing batch A failed: $(grep -v '^%.*Setting' "$W/a.in.dr" | head -c 300)"
else
  consume "$topic" 0 "$offset4" "$W/abs.out"
  check kcat-offset-absolute "$W/ab.in" "$W/ab.in.dr" "$W/abs.out" 0 phase=ab 4
fi

# -o s@T: exactly batch B (every record of A is older than T, every record of B newer).
consume "$topic" 0 "s@$T" "$W/ts.out"
check kcat-offset-timestamp "$W/b.in" "$W/b.in.dr" "$W/ts.out" 0 phase=ab

# -o end: a consumer waiting at the end sees none of A and B, and all of C produced after it
# reached the end.
timeout 60 kcat -b "$BOOTSTRAP" -C -t "$topic" -p 0 -o end -c 5 -m 10 -f "$FORMAT" \
  >"$W/end.out" 2>"$W/end.out.err" &
consumer=$!
ready=""
for _ in $(seq 1 150); do
  if grep -q "Reached end of topic $topic \[0\]" "$W/end.out.err"; then ready=1; break; fi
  kill -0 "$consumer" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  kill "$consumer" 2>/dev/null || true
  wait "$consumer" 2>/dev/null || true
  result kcat-offset-end "the -o end consumer never reached the end within 15 s: $(tail -c 300 "$W/end.out.err" | tr '\n' ' ')"
else
  produce "$topic" 0 lz4 "$W/c.in" phase=c
  wait "$consumer" || true
  check kcat-offset-end "$W/c.in" "$W/c.in.dr" "$W/end.out" 0 phase=c
fi

exit $((FAILED > 0))
