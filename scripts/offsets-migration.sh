#!/usr/bin/env bash
# Upgrade check for __consumer_offsets: a data dir written by an older lmq (one offsets
# partition, no cleanup.policy) is served by a newer one with every committed offset kept.
#   scripts/offsets-migration.sh OLD_LMQ NEW_LMQ
set -euo pipefail
old=$1 new=$2
dir=$(mktemp -d)
port=19871
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
serve() {
  "$1" serve --data-dir "$dir/data" --listen 127.0.0.1:$port --admin-listen off >>"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do "$new" topics list -b 127.0.0.1:$port >/dev/null 2>&1 && return; sleep 0.1; done
  echo "broker did not start"; exit 1
}
stop() { kill -INT "$pid"; wait "$pid" || true; }

serve "$old"
"$old" topics create orders --partitions 3 -b 127.0.0.1:$port >/dev/null
for n in $(seq 1 12); do printf 'a\nb\nc\nd\n' | "$old" produce orders -b 127.0.0.1:$port >/dev/null; done
for group in $(seq 1 20); do
  "$old" groups reset-offsets "group-$group" --topic orders --to "$group" -b 127.0.0.1:$port >/dev/null 2>&1
done
before=$("$old" topics describe __consumer_offsets -b 127.0.0.1:$port)
stop

serve "$new"
for group in $(seq 1 20); do
  "$new" groups describe "group-$group" -o json -b 127.0.0.1:$port >"$dir/g.json"
  python3 - "$dir/g.json" "$group" <<'PY'
import json, sys
described = json.load(open(sys.argv[1]))
committed = sorted({entry["committed"] for entry in described["offsets"]})
assert len(described["offsets"]) == 3 and committed == [int(sys.argv[2])], described
PY
done
after=$("$new" topics describe __consumer_offsets -b 127.0.0.1:$port)
stop
echo "--- old lmq's offsets topic"; echo "$before" | grep -E "Partitions|cleanup.policy" || true
echo "--- after the upgrade (first FindCoordinator done)"; echo "$after" | grep -E "Partitions|cleanup.policy"
echo "$after" | grep -qE "Partitions: 1$" || { echo "the partition count changed"; exit 1; }
echo "$after" | grep -qE "cleanup.policy +compact +topic" || { echo "not compacted"; exit 1; }
echo "all 20 groups' committed offsets are there after the upgrade"
