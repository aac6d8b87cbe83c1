#!/usr/bin/env bash
# Storage throughput as a ratio of this disk's raw sequential write, in one run.
#
#   scripts/storage-bench.sh [--dir DIR]
#
# Measures with dd on DIR (default $LMQ_CACHE/bench, i.e. ~/.cache/lmq/bench):
#   device    1 GiB in 1 MiB writes, then one fdatasync  (what the disk sustains)
#   buffered  1 GiB in 16 KiB writes, no sync             (the page cache: what Os policy pays)
#   dsync     64 MiB in 16 KiB writes, each one synced    (what EveryBatch pays per batch)
# then `cargo bench -p lmq-storage` with its data on the same DIR, and prints
# append(Os)/device (the storage issue's target: >= 0.70), append(Os)/buffered,
# append(EveryBatch)/dsync and the sequential read figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
dir="$LMQ_CACHE/bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    *) echo "usage: scripts/storage-bench.sh [--dir DIR]" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
command -v dd >/dev/null || { echo "dd missing: apt-get install coreutils" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing: apt-get install python3" >&2; exit 1; }

# dd's last stderr line: "N bytes (...) copied, S s, R MB/s": bytes / seconds.
dd_rate() {
  local out
  out=$(dd "$@" 2>&1 | tail -n 1)
  python3 -c 'import sys,re; m=re.match(r"(\d+) bytes.*copied, ([0-9.e+-]+) s", sys.argv[1]); print(int(m.group(1))/float(m.group(2)))' "$out"
}
file="$dir/dd.bin"
echo "measuring raw sequential write on $dir ..." >&2
device=$(dd_rate if=/dev/zero of="$file" bs=1M count=1024 conv=fdatasync)
rm -f "$file"
buffered=$(dd_rate if=/dev/zero of="$file" bs=16k count=65536)
rm -f "$file"
dsync=$(dd_rate if=/dev/zero of="$file" bs=16k count=4096 oflag=dsync)
rm -f "$file"

echo "running cargo bench -p lmq-storage ..." >&2
LMQ_BENCH_DIR="$dir" cargo bench -p lmq-storage --bench log -- --noplot >&2

python3 - "$device" "$buffered" "$dsync" <<'PY'
import json, os, sys
device, buffered, dsync = (float(x) for x in sys.argv[1:4])
def rate(group, name):
    base = os.path.join("target", "criterion", group, name, "new")
    mean_ns = json.load(open(os.path.join(base, "estimates.json")))["mean"]["point_estimate"]
    nbytes = json.load(open(os.path.join(base, "benchmark.json")))["throughput"]["Bytes"]
    return nbytes / (mean_ns / 1e9)
os_rate = rate("append", "os")
every = rate("append", "every_batch")
read = rate("read", "sequential_1mib_fetches")
mb = lambda r: f"{r / 1e6:9.1f} MB/s"
print("| measure | throughput | ratio |")
print("| --- | --- | --- |")
print(f"| dd raw device write (1 MiB + fdatasync) | {mb(device)} | |")
print(f"| dd buffered write (16 KiB) | {mb(buffered)} | |")
print(f"| dd 16 KiB writes with O_DSYNC | {mb(dsync)} | |")
print(f"| append, FlushPolicy::Os | {mb(os_rate)} | {os_rate / device:.2f} of device, {os_rate / buffered:.2f} of buffered |")
print(f"| append, FlushPolicy::EveryBatch | {mb(every)} | {every / dsync:.2f} of dsync |")
print(f"| sequential read, 1 MiB fetches | {mb(read)} | |")
print(f"append_os/device {os_rate / device:.2f} (target >= 0.70)")
PY
