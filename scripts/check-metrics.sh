#!/usr/bin/env bash
# Checks the broker's /metrics under load with Prometheus's own linter:
#   scripts/check-metrics.sh [LMQ_BINARY]
# Installs promtool (Debian package "prometheus") when missing, starts lmq on free loopback
# ports, produces and consumes with the lmq CLI, scrapes /metrics in the classic text format
# and runs `promtool check metrics` on it. Exits non-zero on any lint problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LIB_NAME=check-metrics
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
LMQ="${1:-target/debug/lmq}"
[[ -x "$LMQ" ]] || die "$LMQ is not built: cargo build -p lmq-broker"
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  apt_install prometheus
  # The package may start a Prometheus server; this check does not need one.
  pkill -x prometheus 2>/dev/null || true
fi
data_dir=$(mktemp -d)
# Port 0 for both listeners: the kernel picks free ports and the ready line names them.
"$LMQ" serve --data-dir "$data_dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$data_dir.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data_dir" "$data_dir.log" "$data_dir.metrics"' EXIT
ready="$(wait_for_line "$data_dir.log" 'lmq ready' 20 "$pid")" ||
  { cat "$data_dir.log" >&2; die "lmq did not become ready"; }
bootstrap="$(lmq_ready_address "$ready" listen)"
admin="$(lmq_ready_address "$ready" admin)"
admin_port=${admin##*:}
curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null || { echo "check-metrics: /ready did not answer" >&2; cat "$data_dir.log" >&2; exit 1; }
"$LMQ" topics create metrics-load --partitions 3 -b "$bootstrap" >/dev/null
seq 1 500 | "$LMQ" produce metrics-load -b "$bootstrap" >/dev/null
"$LMQ" consume metrics-load --partition 0 --max 10 --idle-ms 500 -b "$bootstrap" >/dev/null
"$LMQ" groups reset-offsets metrics-readers --topic metrics-load --to earliest -b "$bootstrap" >/dev/null 2>&1
curl -sf "http://127.0.0.1:$admin_port/metrics" >"$data_dir.metrics"
grep -q '^lmq_topic_records_in_total{topic="metrics-load"} 500$' "$data_dir.metrics" \
  || { echo "check-metrics: records-in counter did not count the 500 records" >&2; exit 1; }
promtool check metrics <"$data_dir.metrics"
echo "check-metrics: promtool check metrics passed ($(grep -vc '^#' "$data_dir.metrics") samples)"
