#!/usr/bin/env bash
# Does scraping /metrics every second change produce throughput?
#
#   scripts/scrape-bench.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 8 s)
#
# Starts a release lmq on free loopback ports and runs lmq-perf produce-only loads of SECONDS
# each, alternating without and with a scraper that GETs /metrics once a second (A B B A A B ...,
# so drift of the machine and warm-up hit both sides alike). Prints each run's MB/s and, last, the
# ratio of the mean with scraping to the mean without. A figure, not a test: it never fails
# on a threshold.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LIB_NAME=scrape-bench
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS="${1:-3}"
SECONDS_PER="${2:-8}"
cargo build --release -q -p lmq-broker -p lmq-bench
LMQ=target/release/lmq PERF=target/release/lmq-perf

work=$(mktemp -d)
"$LMQ" serve --data-dir "$work/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/log" 2>&1 &
pid=$!
scraper=""
trap 'kill $scraper "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
ready="$(wait_for_line "$work/log" 'lmq ready' 20 "$pid")" ||
  { cat "$work/log" >&2; die "lmq did not become ready"; }
bootstrap="$(lmq_ready_address "$ready" listen)"
admin="$(lmq_ready_address "$ready" admin)"

run() { # $1: label, $2: run number
  "$PERF" run --bootstrap "$bootstrap" --topic "scrape-$1-$2" --partitions 8 \
    --duration-s "$SECONDS_PER" --warmup-s 1 --no-consume |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["produce_mb_per_s"])'
}
without=() with=()
scraped_run() { # $1: run number; the scraper runs only for this load
  (while curl -sf -o /dev/null "http://$admin/metrics"; do sleep 1; done) &
  scraper=$!
  run scraped "$1"
  kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true
  scraper=""
}
for i in $(seq 1 "$ROUNDS"); do
  # Odd rounds run the plain load first, even rounds the scraped one, so neither side always
  # gets the warmer broker.
  if ((i % 2)); then a=$(run plain "$i"); b=$(scraped_run "$i"); else b=$(scraped_run "$i"); a=$(run plain "$i"); fi
  without+=("$a")
  with+=("$b")
  printf 'round %d: without scraping %.1f MB/s, scraped every 1 s %.1f MB/s\n' "$i" "$a" "$b"
done
python3 - "${without[*]}" "${with[*]}" <<'EOF'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
print(f"mean without {statistics.mean(a):.1f} MB/s (sd {statistics.pstdev(a):.1f}), "
      f"with {statistics.mean(b):.1f} MB/s (sd {statistics.pstdev(b):.1f}); "
      f"with/without {statistics.mean(b) / statistics.mean(a):.3f}")
EOF
