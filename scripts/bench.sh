#!/usr/bin/env bash
# LMQ against Apache Kafka on this machine, as LMQ ÷ Kafka ratios measured in one run.
#
#   scripts/bench.sh [--quick]
#
# Starts Apache Kafka (scripts/kafka.sh: single-node KRaft, its default -Xmx1g heap), then LMQ,
# one after the other, with data dirs on the same filesystem ($LMQ_BENCH_DIR, default
# ~/.cache/lmq/bench-brokers), and drives both with the same loads: Kafka's ProducerPerformance
# and ConsumerPerformance, lmq-perf (bench/, the native Rust client: open-loop, latency from
# each record's due time, so no coordinated omission) and rdkafka-perf (bench/rdkafka-perf.c,
# librdkafka's producer at saturation; needs librdkafka-dev, installed with apt). 1 KiB incompressible records, no compression, RF=1,
# acks=1, batch.size 16 KiB, under two durability settings:
#   (a) no fsync on either side (page cache, both brokers' default);
#   (b) fsync per append before the answer: Kafka topic config flush.messages=1 (the topic
#       form of log.flush.interval.messages=1), LMQ [log] flush = "every-batch".
# Measures: produce throughput at saturation, consume throughput of a full topic,
# end-to-end and produce latency at 25/50/80% of Kafka's maximum (never at saturation),
# broker RSS every second (anonymous + shmem; file-mapped pages reported apart), broker
# CPU-seconds per GB moved, start-up time from exec to the first Metadata answer on an empty
# data dir and after a clean restart on one with 5 GiB of log (1 GiB with --quick), and the
# machine's ceilings: loopback TCP and sequential disk write with and without fdatasync.
# Broker on core 0, clients on core 1 (taskset). Every run checks its counts (stored =
# acknowledged = consumed) and is flagged when the client used >= 90% of its core
# (client-bound). --quick: 1 and 8 partitions, linger 5 ms, latency and consume under (a)
# only, ~10 s per measurement (about 8 minutes in all). Full: 1/8/64 partitions, linger 0 and
# 5 ms, latency and consume under (a) and (b), one zstd run, ~15 s per measurement (198 runs,
# about 40 minutes).
#
# Output: the ratio table (markdown) and bench/results/<mode>.{md,json}; the last line is
#   produce x.xx consume x.xx p99 x.xx rss x.xx start x.xx      (LMQ ÷ Kafka)
# where produce/consume are geometric means over the (a) runs of every tool, p99 the
# geometric mean of end-to-end p99 at 50% load under (a), rss the peak under load and start
# the empty-data-dir start-up.
#
# Environment: LMQ_BENCH_DIR (work dir; its run/ subdir is removed at start and its data at
# exit), BENCH_SECONDS (override the per-measurement seconds, an integer), BENCH_STARTUP_GIB
# (GiB of log for the second start-up), BENCH_BROKER_CPUS / BENCH_CLIENT_CPUS (taskset lists;
# default 0 and 1 on a machine with 2+ cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

MODE=full
while [[ $# -gt 0 ]]; do
  case "$1" in
  --quick) MODE=quick; shift ;;
  *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
  esac
done

if [[ "$MODE" == quick ]]; then
  PARTS=(1 8) LINGERS=(5) LATENCY_DURS=" a " CONSUME_DURS=" a " SECONDS_PER=10 WARMUP_S=2 ZSTD=0
  WARMUP_LOAD_S=5 STARTUP_GIB=1
else
  PARTS=(1 8 64) LINGERS=(0 5) LATENCY_DURS=" a b " CONSUME_DURS=" a b " SECONDS_PER=15 WARMUP_S=3
  ZSTD=1 WARMUP_LOAD_S=15 STARTUP_GIB=5
fi
STARTUP_GIB="${BENCH_STARTUP_GIB:-$STARTUP_GIB}"
if [[ -n "${BENCH_SECONDS:-}" ]]; then
  # Shorter runs keep a fifth of their time as latency warm-up.
  SECONDS_PER="$BENCH_SECONDS"
  WARMUP_S="$(awk -v s="$SECONDS_PER" -v w="$WARMUP_S" 'BEGIN {print (s / 5 < w ? s / 5 : w)}')"
fi
LOADS=(25 50 80)
RECORD=1024
BATCH=16384

die() { echo "scripts/bench.sh: $*" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; }
for tool in python3 java taskset timeout; do
  command -v "$tool" >/dev/null || die "'$tool' is missing"
done

NCPU="$(nproc)"
if ((NCPU >= 2)); then
  BROKER_CPUS="${BENCH_BROKER_CPUS:-0}" CLIENT_CPUS="${BENCH_CLIENT_CPUS:-1}"
else
  BROKER_CPUS="${BENCH_BROKER_CPUS:-0}" CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
fi
CLIENT_NCPU="$(taskset -c "$CLIENT_CPUS" nproc)"
HZ="$(getconf CLK_TCK)"

LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
WORK="${LMQ_BENCH_DIR:-$LMQ_CACHE/bench-brokers}"
RUN="$WORK/run"
RESULTS="$ROOT/bench/results"
LMQ="$ROOT/target/release/lmq"
PERF="$ROOT/target/release/lmq-perf"
JSONL="$RUN/measurements.jsonl"

# ---- processes we start, and their cleanup ---------------------------------------------
BPID="" BROKER="" KDIR="" LMQ_PID="" SAMPLER="" WAITER="" IPERF=""
alive() { # PID runs (a zombie does not count)
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}
stop_sampler() {
  if [[ -n "$SAMPLER" ]]; then
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
  fi
}
stop_lmq() {
  [[ -n "$LMQ_PID" ]] || return 0
  kill -TERM "$LMQ_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while alive "$LMQ_PID" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$LMQ_PID"; then kill -KILL "$LMQ_PID" 2>/dev/null || true; fi
  LMQ_PID=""
}
stop_kafka() {
  [[ -n "$KDIR" ]] || return 0
  scripts/kafka.sh broker stop "$KDIR" >/dev/null 2>&1 || true
  KDIR=""
}
cleanup() {
  local status=$?
  [[ -z "$WAITER" ]] || kill "$WAITER" 2>/dev/null || true
  [[ -z "$IPERF" ]] || kill "$IPERF" 2>/dev/null || true
  stop_sampler
  stop_lmq
  stop_kafka
  # The logs stay in $RUN; the record data (gigabytes) goes.
  rm -rf "$RUN"/kafka/data "$RUN"/lmq-*/data "$RUN/dd.bin" 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Appends one JSON object to the run's measurements: KEY=VALUE..., VALUE read as JSON when
# it parses as JSON, else kept as a string.
record() {
  python3 -c '
import json, sys
out = {}
for arg in sys.argv[1:]:
    key, value = arg.split("=", 1)
    try:
        out[key] = json.loads(value)
    except ValueError:
        out[key] = value
print(json.dumps(out))' "$@" >>"$JSONL"
}
json_get() { # FILE KEY: a top-level field of the one JSON object in FILE
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

broker_ticks() { awk '{print $14 + $15}' "/proc/$BPID/stat" 2>/dev/null || echo 0; }

# Samples the broker's memory each second: VmRSS, RssAnon, RssFile, RssShmem (kB).
start_sampler() { # FILE
  local file="$1" pid="$BPID"
  (
    while [[ -r "/proc/$pid/status" ]]; do
      awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {printf "%s %s ", $1, $2} END {print ""}' \
        "/proc/$pid/status" 2>/dev/null || break
      sleep 1
    done
  ) >>"$file" &
  SAMPLER=$!
}

# client TAG LIMIT_S CMD...: syncs the page cache, then runs CMD on the client cores, output in
# $RUN/out/TAG.{out,err};
# sets CLIENT_UTIL (CPU-seconds per second per client core) and BROKER_CPU_S; returns CMD's
# status.
CLIENT_UTIL=null BROKER_CPU_S=0
client() {
  local tag="$1" limit="$2"
  shift 2
  local out="$RUN/out/$tag" before after status=0
  # Dirty pages of the previous run are written back now, not during this one.
  timeout 120 sync || true
  before="$(broker_ticks)"
  timeout --kill-after=10 "$limit" taskset -c "$CLIENT_CPUS" \
    /usr/bin/time -f '%U %S %e' -o "$out.time" "$@" >"$out.out" 2>"$out.err" || status=$?
  after="$(broker_ticks)"
  BROKER_CPU_S="$(awk -v a="$before" -v b="$after" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz}')"
  CLIENT_UTIL="$(tail -n 1 "$out.time" 2>/dev/null |
    awk -v n="$CLIENT_NCPU" 'NF == 3 && $3 > 0 {printf "%.3f", ($1 + $2) / $3 / n; ok = 1} END {if (!ok) print "null"}')"
  if ((status != 0)); then
    log "$tag failed ($status): $(tail -n 3 "$out.err" | tr '\n' ' ')"
  fi
  return "$status"
}

# ---- the Java tools, with a full JIT (scripts/kafka.sh's `tool` runs C1-only, small heap) ---
JAVA_TOOL=()

# ---- one broker's measurements ---------------------------------------------------------
declare -A KAFKA_MAX # "dur/P/L" -> Kafka's maximum records/s under lmq-perf

topic_config() { # DUR: the topic configs that durability needs on this broker
  if [[ "$1" == b && "$BROKER" == kafka ]]; then echo "--config flush.messages=1"; fi
}

delete_topic() { "$LMQ" topics delete -b "$ADDR" "$1" >/dev/null 2>&1 || true; }

measure_config() { # DUR P L CODEC
  local dur="$1" p="$2" l="$3" codec="$4" tag limit rate n status
  local base="$dur-p$p-l$l-$codec"
  limit=$((SECONDS_PER * 4 + 120))
  # lmq-perf at saturation (produce + consume in one process).
  tag="$BROKER-$base-lmqperf-max"
  log "$tag"
  status=0
  # shellcheck disable=SC2046
  client "$tag" "$limit" "$PERF" run --bootstrap "$ADDR" --topic "lp-$base" --partitions "$p" \
    $(topic_config "$dur") --record-size "$RECORD" --batch-bytes "$BATCH" --linger-ms "$l" \
    --codec "$codec" --rate 0 --duration-s "$SECONDS_PER" --warmup-s "$WARMUP_S" || status=$?
  record kind=produce broker="$BROKER" durability="$dur" tool=lmq-perf partitions="$p" \
    linger_ms="$l" codec="$codec" status="$status" client_util="$CLIENT_UTIL" \
    broker_cpu_s="$BROKER_CPU_S" out="$RUN/out/$tag.out"
  delete_topic "lp-$base"
  rate=0
  ((status == 0)) && rate="$(json_get "$RUN/out/$tag.out" produce_records_per_s)"
  rate="${rate%.*}"
  [[ "$BROKER" == kafka ]] && KAFKA_MAX["$dur/$p/$l/$codec"]="$rate"

  # ProducerPerformance: the same record count on both brokers, half of what lmq-perf sent
  # Kafka per second times the measurement seconds (the Java client on one core is about that
  # fast); then the stored count, and ConsumerPerformance and lmq-perf reading the topic back.
  local kmax="${KAFKA_MAX["$dur/$p/$l/$codec"]:-0}"
  n=$((kmax * SECONDS_PER / 2))
  ((n < 100000)) && n=100000
  ((n > 5000000)) && n=5000000
  local topic="pp-$base"
  # shellcheck disable=SC2046
  "$PERF" create-topic --bootstrap "$ADDR" --topic "$topic" --partitions "$p" \
    $(topic_config "$dur") >/dev/null
  tag="$BROKER-$base-pp"
  log "$tag ($n records)"
  status=0
  client "$tag" "$limit" "${JAVA_TOOL[@]}" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$ADDR" --topic "$topic" --num-records "$n" --payload-file "$RUN/payloads.txt" \
    --throughput -1 --command-property acks=1 "linger.ms=$l" "batch.size=$BATCH" \
    "compression.type=$codec" || status=$?
  local stored
  stored="$("$PERF" offsets --bootstrap "$ADDR" --topic "$topic" 2>/dev/null)" || stored='{}'
  record kind=produce broker="$BROKER" durability="$dur" tool=ProducerPerformance partitions="$p" \
    linger_ms="$l" codec="$codec" status="$status" expected="$n" client_util="$CLIENT_UTIL" \
    broker_cpu_s="$BROKER_CPU_S" stored="$stored" out="$RUN/out/$tag.out"
  # librdkafka's producer (the C client most non-Java clients wrap), same records and settings.
  topic="rk-$base"
  # shellcheck disable=SC2046
  "$PERF" create-topic --bootstrap "$ADDR" --topic "$topic" --partitions "$p" \
    $(topic_config "$dur") >/dev/null
  tag="$BROKER-$base-rdkafka"
  log "$tag ($n records)"
  status=0
  client "$tag" "$limit" "$RDPERF" "$ADDR" "$topic" "$n" "$RECORD" "$l" "$BATCH" 1 "$codec" ||
    status=$?
  stored="$("$PERF" offsets --bootstrap "$ADDR" --topic "$topic" 2>/dev/null)" || stored='{}'
  record kind=produce broker="$BROKER" durability="$dur" tool=rdkafka-perf partitions="$p" \
    linger_ms="$l" codec="$codec" status="$status" expected="$n" client_util="$CLIENT_UTIL" \
    broker_cpu_s="$BROKER_CPU_S" stored="$stored" out="$RUN/out/$tag.out"
  delete_topic "$topic"
  topic="pp-$base"
  # Consume: each tool reads the whole topic twice (fresh group each time); the report keeps
  # the better pass of each, which filters out a passing disturbance of the shared machine.
  if [[ "$l" == "${LINGERS[0]}" && "$codec" == none && "$CONSUME_DURS" == *" $dur "* ]]; then
    local pass
    for pass in 1 2; do
      tag="$BROKER-$base-cp-$pass"
      log "$tag"
      status=0
      client "$tag" "$limit" "${JAVA_TOOL[@]}" org.apache.kafka.tools.ConsumerPerformance \
        --bootstrap-server "$ADDR" --topic "$topic" --num-records "$n" --group "cp-$base-$pass" \
        --timeout 30000 || status=$?
      record kind=consume broker="$BROKER" durability="$dur" tool=ConsumerPerformance \
        partitions="$p" pass="$pass" status="$status" expected="$n" client_util="$CLIENT_UTIL" \
        broker_cpu_s="$BROKER_CPU_S" out="$RUN/out/$tag.out"
      tag="$BROKER-$base-lmqperf-consume-$pass"
      log "$tag"
      status=0
      client "$tag" "$limit" "$PERF" consume --bootstrap "$ADDR" --topic "$topic" || status=$?
      record kind=consume broker="$BROKER" durability="$dur" tool=lmq-perf partitions="$p" \
        pass="$pass" status="$status" expected="$n" client_util="$CLIENT_UTIL" \
        broker_cpu_s="$BROKER_CPU_S" out="$RUN/out/$tag.out"
    done
  fi
  delete_topic "$topic"

  # Latency at fixed shares of Kafka's maximum.
  if [[ "$LATENCY_DURS" == *" $dur "* && "$codec" == none ]]; then
    local pct
    for pct in "${LOADS[@]}"; do
      rate=$((kmax * pct / 100))
      ((rate > 0)) || continue
      tag="$BROKER-$base-lmqperf-r$pct"
      log "$tag ($rate records/s)"
      status=0
      # shellcheck disable=SC2046
      client "$tag" "$limit" "$PERF" run --bootstrap "$ADDR" --topic "lr-$base-$pct" \
        --partitions "$p" $(topic_config "$dur") --record-size "$RECORD" --batch-bytes "$BATCH" \
        --linger-ms "$l" --rate "$rate" --duration-s "$SECONDS_PER" --warmup-s "$WARMUP_S" ||
        status=$?
      record kind=latency broker="$BROKER" durability="$dur" tool=lmq-perf partitions="$p" \
        linger_ms="$l" codec=none load_pct="$pct" target_rate="$rate" status="$status" \
        client_util="$CLIENT_UTIL" broker_cpu_s="$BROKER_CPU_S" out="$RUN/out/$tag.out"
      delete_topic "lr-$base-$pct"
    done
  fi
}

# Load not measured, right after a start: the JVM's JIT and both brokers' first segment files.
warm_up() {
  log "$BROKER: warm-up load (${WARMUP_LOAD_S} s, not measured)"
  client "$BROKER-warmup-$1" $((WARMUP_LOAD_S * 4 + 60)) "$PERF" run --bootstrap "$ADDR" \
    --topic "warmup-$1" --partitions 8 --rate 0 --duration-s "$WARMUP_LOAD_S" --no-consume || true
  delete_topic "warmup-$1"
}

measure_durability() { # DUR
  local p l
  for p in "${PARTS[@]}"; do
    for l in "${LINGERS[@]}"; do
      measure_config "$1" "$p" "$l" none
    done
  done
  if ((ZSTD)) && [[ "$1" == a ]]; then
    measure_config a 8 5 zstd
  fi
}

# ---- start-up: exec to the first Metadata answer naming the broker -----------------------
start_kafka() { # DATA: starts Apache Kafka on $KDIR at $ADDR and records its start-up
  log "starting Apache Kafka on $ADDR (data dir: $1)"
  mkdir -p "$KDIR"
  local tag="kafka-ready-${1// /}" exec_us ready_us
  timeout 150 taskset -c "$CLIENT_CPUS" "$PERF" wait-metadata --bootstrap "$ADDR" --timeout-s 140 \
    >"$RUN/out/$tag.json" 2>"$RUN/out/$tag.err" &
  WAITER=$!
  taskset -c "$BROKER_CPUS" scripts/kafka.sh broker start "$KDIR" "${ADDR##*:}" >"$RUN/out/$tag.log"
  BPID="$(cat "$KDIR/kafka.pid")"
  # The broker JVM's exec instant: its start time in ticks since boot, against /proc/uptime now.
  exec_us="$(python3 -c '
import sys, time
hz = float(sys.argv[2])
start = int(open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()[19]) / hz
uptime = float(open("/proc/uptime").read().split()[0]); now = time.time()
print(int((now - (uptime - start)) * 1e6))' "$BPID" "$HZ")"
  wait "$WAITER" || die "Apache Kafka never answered Metadata ($(cat "$RUN/out/$tag.err"))"
  WAITER=""
  ready_us="$(json_get "$RUN/out/$tag.json" ready_unix_us)"
  record kind=startup broker=kafka data="$1" log_bytes="$(du -sb "$KDIR/data" | cut -f1)" \
    ms="$(((ready_us - exec_us) / 1000))" \
    method="JVM exec (from /proc start time, 10 ms ticks) to first Metadata answer naming a broker"
}

start_lmq() { # DIR DUR DATA: starts LMQ on DIR/data at $ADDR and records its start-up
  local flush=os tag="lmq-$2-startup-${3// /}"
  [[ "$2" == b ]] && flush=every-batch
  printf '[log]\nflush = "%s"\n\n[group]\ninitial_rebalance_delay_ms = 0\n' "$flush" >"$1/lmq.toml"
  log "starting LMQ on $ADDR (flush $flush, data dir: $3)"
  taskset -c "$CLIENT_CPUS" "$PERF" startup --bootstrap "$ADDR" --timeout-s 60 --log "$1/lmq.log" \
    -- taskset -c "$BROKER_CPUS" "$LMQ" serve --config "$1/lmq.toml" --data-dir "$1/data" \
    --listen "$ADDR" --admin-listen off >"$RUN/out/$tag.json"
  LMQ_PID="$(json_get "$RUN/out/$tag.json" pid)"
  BPID="$LMQ_PID"
  record kind=startup broker=lmq durability="$2" data="$3" \
    log_bytes="$(du -sb "$1/data" | cut -f1)" ms="$(json_get "$RUN/out/$tag.json" startup_ms)" \
    method="exec to first Metadata answer naming a broker (lmq-perf startup)"
}

# Fills the running broker's log with STARTUP_GIB GiB of 1 KiB records (rdkafka-perf, 8
# partitions, not measured) for the start-up on a full data dir; the broker then restarts
# cleanly on it (page cache warm on both brokers).
fill_log() {
  local n=$((STARTUP_GIB * 1024 * 1024)) stored
  "$PERF" create-topic --bootstrap "$ADDR" --topic startup-fill --partitions 8 >/dev/null
  log "$BROKER: writing $STARTUP_GIB GiB ($n records) for the start-up measurement"
  client "$BROKER-fill" 1800 "$RDPERF" "$ADDR" startup-fill "$n" "$RECORD" 5 "$BATCH" 1 none ||
    die "filling $BROKER's log failed"
  stored="$("$PERF" offsets --bootstrap "$ADDR" --topic startup-fill 2>/dev/null)" || stored='{}'
  record kind=fill broker="$BROKER" expected="$n" stored="$stored"
}

# ---- the run ---------------------------------------------------------------------------
log "building target/release/lmq and lmq-perf, and rdkafka-perf (bench/rdkafka-perf.c)"
cargo build --release -q -p lmq-broker -p lmq-bench
if [[ ! -f /usr/include/librdkafka/rdkafka.h ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librdkafka-dev >&2 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librdkafka-dev >&2; } ||
    die "librdkafka-dev is missing and apt-get install librdkafka-dev failed"
fi
RDPERF="$LMQ_CACHE/bench/rdkafka-perf-$(sha256sum bench/rdkafka-perf.c | cut -c1-12)"
if [[ ! -x "$RDPERF" ]]; then
  mkdir -p "$LMQ_CACHE/bench"
  gcc -O2 -Wall -Wextra -o "$RDPERF.tmp" bench/rdkafka-perf.c -lrdkafka || die "compiling bench/rdkafka-perf.c failed"
  mv "$RDPERF.tmp" "$RDPERF"
fi
scripts/kafka.sh install
KLIB="$(scripts/kafka.sh libdir)"
JAVA_TOOL=(java -Xmx1g -XX:+UseG1GC
  -Dlog4j2.configurationFile="$(dirname "$KLIB")/config/tools-log4j2.properties"
  -Dkafka.tools.log.level=WARN -cp "$KLIB/*")
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing: apt-get install -y time"

rm -rf "$RUN"
mkdir -p "$RUN/out" "$RESULTS"
: >"$JSONL"
# ProducerPerformance payloads: random lines of exactly 1 KiB (base64 of random bytes; the
# Java tool takes text lines, lmq-perf sends raw random bytes).
python3 -c '
import base64, os, sys
with open(sys.argv[1], "w") as out:
    for _ in range(2000):
        out.write(base64.b64encode(os.urandom(768)).decode() + "\n")' "$RUN/payloads.txt"

STARTED_AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
COMMAND=scripts/bench.sh
[[ "$MODE" == quick ]] && COMMAND="scripts/bench.sh --quick"
record kind=meta mode="$MODE" started="$STARTED_AT" command="$COMMAND" \
  kafka_version="$(scripts/kafka.sh version)" cpus="$NCPU" broker_cpus="$BROKER_CPUS" \
  client_cpus="$CLIENT_CPUS" seconds="$SECONDS_PER" record_size="$RECORD" \
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)" kernel="$(uname -r)" \
  cpu_model="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
  lmq_commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
top -bn1 | head -n 15 >"$RUN/top-before.txt" || true

# Ceilings: loopback TCP, then sequential writes on the brokers' filesystem.
log "ceilings: loopback TCP and disk"
loopback=null
if command -v iperf3 >/dev/null; then
  port="$(free_port)"
  timeout 60 taskset -c "$BROKER_CPUS" iperf3 -s -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  IPERF=$!
  for _ in $(seq 1 25); do
    sleep 0.2
    out="$(timeout 30 taskset -c "$CLIENT_CPUS" iperf3 -c 127.0.0.1 -p "$port" -t 3 -J 2>/dev/null)" ||
      continue
    if loopback="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["end"]["sum_received"]["bits_per_second"] / 8e6)' "$out" 2>/dev/null)"; then
      break
    fi
    loopback=null
  done
  kill "$IPERF" 2>/dev/null || true
  wait "$IPERF" 2>/dev/null || true
  IPERF=""
  loopback_tool=iperf3
else
  loopback_tool=python
  loopback="$(timeout 60 python3 -c '
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def sink():
    conn, _ = srv.accept()
    while conn.recv(1 << 20): pass
threading.Thread(target=sink, daemon=True).start()
c = socket.create_connection(srv.getsockname()); buf = b"x" * (1 << 20); n = 0; t = time.time()
while time.time() - t < 3: c.sendall(buf); n += len(buf)
print(n / (time.time() - t) / 1e6)')"
fi
dd_rate() { # dd ARGS...: MB/s from dd's summary line
  dd "$@" 2>&1 | tail -n 1 |
    python3 -c 'import sys,re; m=re.match(r"(\d+) bytes.*copied, ([0-9.e+-]+) s", sys.stdin.read()); print(int(m.group(1))/float(m.group(2))/1e6)'
}
disk_sync="$(dd_rate if=/dev/zero of="$RUN/dd.bin" bs=1M count=512 conv=fdatasync)"
rm -f "$RUN/dd.bin"
disk_buffered="$(dd_rate if=/dev/zero of="$RUN/dd.bin" bs=16k count=32768)"
rm -f "$RUN/dd.bin"
disk_dsync="$(dd_rate if=/dev/zero of="$RUN/dd.bin" bs=16k count=2048 oflag=dsync)"
rm -f "$RUN/dd.bin"
record kind=ceilings loopback_mb_per_s="$loopback" loopback_tool="$loopback_tool" \
  disk_fdatasync_mb_per_s="$disk_sync" disk_buffered_mb_per_s="$disk_buffered" \
  disk_dsync_16k_mb_per_s="$disk_dsync"

# Apache Kafka: one process for both durabilities ((b) is a topic config).
BROKER=kafka
KDIR="$RUN/kafka"
ADDR="127.0.0.1:$(free_port)"
start_kafka empty
start_sampler "$RUN/rss-kafka.txt"
warm_up kafka
measure_durability a
measure_durability b
stop_sampler
fill_log
# Kafka deletes a topic's files a minute after the topic (file.delete.delay.ms): let it finish,
# so its restart does not pay for the measurements' topics.
for _ in $(seq 1 90); do
  compgen -G "$KDIR/data/*-delete" >/dev/null || break
  sleep 1
done
scripts/kafka.sh broker stop "$KDIR" >/dev/null
start_kafka "$STARTUP_GIB GiB"
stop_kafka
rm -rf "$RUN/kafka/data"

# LMQ: one process per durability, each on an empty data dir; the (a) one restarts on its
# filled data dir.
BROKER=lmq
for dur in a b; do
  dir="$RUN/lmq-$dur"
  mkdir -p "$dir"
  ADDR="127.0.0.1:$(free_port)"
  start_lmq "$dir" "$dur" empty
  start_sampler "$RUN/rss-lmq.txt"
  warm_up "$dur"
  measure_durability "$dur"
  stop_sampler
  if [[ "$dur" == a ]]; then
    fill_log
    stop_lmq
    start_lmq "$dir" "$dur" "$STARTUP_GIB GiB"
  fi
  stop_lmq
  rm -rf "$dir/data"
done

top -bn1 | head -n 15 >"$RUN/top-after.txt" || true
record kind=end finished="$(date -u +%Y-%m-%dT%H:%M:%SZ)" load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the report ----------------------------------------------------------------------------
python3 - "$RUN" "$RESULTS/$MODE" "$RECORD" <<'PY'
import json, math, re, sys

run, dest, record_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(f"{run}/measurements.jsonl")]
meta = next(r for r in rows if r["kind"] == "meta")
end = next((r for r in rows if r["kind"] == "end"), {})
ceilings = next(r for r in rows if r["kind"] == "ceilings")


def read(path):
    try:
        return open(path).read()
    except OSError:
        return ""


def parse(m):
    """Standard fields of one measurement from its tool's output."""
    text = read(m["out"])
    res = {"mb_per_s": None, "records_per_s": None, "verified": False, "detail": None}
    if m["status"] != 0:
        res["detail"] = f"exit {m['status']}"
        return res
    if m["tool"] == "lmq-perf":
        try:
            out = json.loads(text.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res["detail"] = "no result printed"
            return res
        res["verified"] = bool(out.get("verified"))
        if m["kind"] == "consume":
            res["records_per_s"] = out["consume_records_per_s"]
            res["mb_per_s"] = out["consume_mb_per_s"]
            res["counts"] = {"stored": out["expected"], "consumed": out["consumed"]}
            res["bytes"] = out["consume_bytes"]
        else:
            res["records_per_s"] = out["produce_records_per_s"]
            res["mb_per_s"] = out["produce_mb_per_s"]
            res["counts"] = {k: out[k] for k in ("sent", "acked", "stored", "consumed")}
            res["bytes"] = out["produce_bytes"] + out["consume_bytes"]
            res["e2e_us"] = out["e2e_latency_us"]
            res["produce_us"] = out["produce_latency_us"]
            res["behind_schedule_ms_max"] = out["behind_schedule_ms_max"]
    elif m["tool"] == "ProducerPerformance":
        last = [l for l in text.splitlines() if "99.9th" in l]
        g = re.match(r"(\d+) records sent, ([0-9.]+) records/sec", last[-1]) if last else None
        if g:
            sent, rps = int(g.group(1)), float(g.group(2))
            stored = m.get("stored", {}).get("log_end_total") if isinstance(m.get("stored"), dict) else None
            res["records_per_s"] = rps
            res["mb_per_s"] = rps * record_size / 1e6
            res["counts"] = {"expected": m["expected"], "sent": sent, "stored": stored}
            res["verified"] = sent == m["expected"] and stored == m["expected"]
            res["bytes"] = sent * record_size
    elif m["tool"] == "rdkafka-perf":
        try:
            out = json.loads(text.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res["detail"] = "no result printed"
            return res
        stored = m.get("stored", {}).get("log_end_total") if isinstance(m.get("stored"), dict) else None
        res["records_per_s"] = out["produce_records_per_s"]
        res["mb_per_s"] = out["produce_mb_per_s"]
        res["counts"] = {"expected": m["expected"], "acked": out["delivered"], "stored": stored}
        res["verified"] = out["delivered"] == m["expected"] and stored == m["expected"]
        res["bytes"] = out["delivered"] * record_size
    elif m["tool"] == "ConsumerPerformance":
        lines = text.strip().splitlines()
        idx = next((i for i, l in enumerate(lines) if l.startswith("start.time")), None)
        if idx is not None and idx + 1 < len(lines):
            head = [h.strip() for h in lines[idx].split(",")]
            vals = [v.strip() for v in lines[idx + 1].split(",")]
            row = dict(zip(head, vals))
            consumed = int(row["data.consumed.in.nMsg"])
            rps = float(row["fetch.nMsg.sec"])
            res["records_per_s"] = rps
            res["mb_per_s"] = rps * record_size / 1e6
            res["counts"] = {"stored": m["expected"], "consumed": consumed}
            res["verified"] = consumed == m["expected"]
            res["bytes"] = consumed * record_size
    return res


measures = [r for r in rows if r["kind"] in ("produce", "consume", "latency")]
for m in measures:
    m.update(parse(m))
    util = m.get("client_util")
    m["client_bound"] = isinstance(util, (int, float)) and util >= 0.9
    if m["kind"] == "latency" and m["records_per_s"] is not None:
        m["rate_kept"] = m["records_per_s"] >= 0.95 * m["target_rate"]


def key(m):
    return (m["kind"], m["durability"], m["tool"], m["partitions"], m.get("linger_ms"), m.get("codec"), m.get("load_pct"))


pairs = {}
passes = {}
for m in measures:
    passes.setdefault(key(m), {}).setdefault(m["broker"], []).append(m)
for k, brokers in passes.items():
    # Of repeated passes (consume), the fastest one that counted right.
    pairs[k] = {b: max(ms, key=lambda m: (bool(m.get("verified")), m.get("mb_per_s") or 0))
                for b, ms in brokers.items()}


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(l, k):
    return l / k if l is not None and k not in (None, 0) else None


def notes(*ms):
    out = []
    for m in ms:
        if m is None:
            continue
        who = "Kafka" if m["broker"] == "kafka" else "LMQ"
        if m.get("detail"):
            out.append(f"{who} run failed ({m['detail']})")
        elif not m.get("verified"):
            out.append(f"{who}: COUNTS DIFFER {m.get('counts')}")
        if m.get("client_bound"):
            out.append(f"client-bound on {who} ({m['client_util'] * 100:.0f}% CPU)")
        if m.get("rate_kept") is False:
            out.append(f"{who} fell short of the rate ({m['records_per_s']:,.0f}/s)")
    return "; ".join(out)


table = ["| measure | dur. | part. | linger | tool | Apache Kafka | LMQ | LMQ ÷ Kafka | notes |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
headline = {"produce": [], "consume": [], "p99": []}
flat = []


def add(measure, k, l, absk, absl, r, m_k, m_l, part, linger, tool, dur, headline_key=None):
    table.append(f"| {measure} | {dur} | {part} | {linger} | {tool} | {absk} | {absl} | {fmt(r, 2)} | {notes(m_k, m_l)} |")
    flat.append({"measure": measure, "durability": dur, "partitions": part, "linger_ms": linger,
                 "tool": tool, "kafka": k, "lmq": l, "ratio": r, "notes": notes(m_k, m_l)})
    if headline_key and r is not None:
        headline[headline_key].append(r)


ORDER = {"produce": 0, "consume": 1, "latency": 2}
TOOLS = {"ProducerPerformance": 0, "ConsumerPerformance": 0, "rdkafka-perf": 1, "lmq-perf": 2}


def order(item):
    kind, dur, tool, part, linger, codec, pct = item[0]
    return (ORDER[kind], dur, codec or "", TOOLS[tool], part, linger or 0, pct or 0)


for (kind, dur, tool, part, linger, codec, pct), pair in sorted(pairs.items(), key=order):
    k, l = pair.get("kafka"), pair.get("lmq")
    kv = lambda m, f: m.get(f) if m else None
    if kind in ("produce", "consume"):
        name = f"{kind} MB/s (records/s)" + (f", {codec}" if codec not in (None, "none") else "")
        absk = f"{fmt(kv(k, 'mb_per_s'))} ({fmt(kv(k, 'records_per_s'), 0)})" if k else "n/a"
        absl = f"{fmt(kv(l, 'mb_per_s'))} ({fmt(kv(l, 'records_per_s'), 0)})" if l else "n/a"
        r = ratio(kv(l, "mb_per_s"), kv(k, "mb_per_s"))
        hk = kind if dur == "a" and codec in (None, "none") else None
        add(name, kv(k, "mb_per_s"), kv(l, "mb_per_s"), absk, absl, r, k, l, part,
            linger if linger is not None else "", tool, dur, hk)
    else:
        rate = (k or l)["target_rate"]
        for which, label in (("e2e_us", "end-to-end"), ("produce_us", "produce")):
            def lat(m):
                h = kv(m, which)
                return None if not h or not h["count"] else (h["p50"] / 1e3, h["p99"] / 1e3, h["p999"] / 1e3)
            lk, ll = lat(k), lat(l)
            absk = "/".join(fmt(x, 2) for x in lk) if lk else "n/a"
            absl = "/".join(fmt(x, 2) for x in ll) if ll else "n/a"
            r = ratio(ll[1] if ll else None, lk[1] if lk else None)
            hk = "p99" if which == "e2e_us" and pct == 50 and dur == "a" else None
            add(f"{label} latency p50/p99/p99.9 ms at {pct}% ({rate:,} rec/s); ratio of p99",
                lk[1] if lk else None, ll[1] if ll else None, absk, absl, r, k, l, part, linger, tool, dur, hk)


def rss(broker):
    peak = {"anon": 0, "file": 0, "vmrss": 0}
    for line in read(f"{run}/rss-{broker}.txt").splitlines():
        f = dict(zip(line.split()[::2], map(int, line.split()[1::2])))
        if "RssAnon:" not in f:
            continue
        peak["anon"] = max(peak["anon"], f["RssAnon:"] + f.get("RssShmem:", 0))
        peak["file"] = max(peak["file"], f.get("RssFile:", 0))
        peak["vmrss"] = max(peak["vmrss"], f.get("VmRSS:", 0))
    return {k: v / 1024 for k, v in peak.items()}


rk, rl = rss("kafka"), rss("lmq")
rss_ratio = ratio(rl["anon"], rk["anon"])
table.append(f"| peak RSS under load, MiB (anon+shmem; file-mapped apart) | a+b | | | | {rk['anon']:.0f} ({rk['file']:.0f} file) | {rl['anon']:.0f} ({rl['file']:.0f} file) | {fmt(rss_ratio, 3)} | sampled each second |")
flat.append({"measure": "peak RSS MiB", "kafka": rk, "lmq": rl, "ratio": rss_ratio})

for dur in ("a", "b"):
    def cpu(broker):
        ms = [m for m in measures if m["broker"] == broker and m["durability"] == dur and m.get("bytes")]
        gb = sum(m["bytes"] for m in ms) / 1e9
        return sum(m["broker_cpu_s"] for m in ms) / gb if gb else None
    ck, cl = cpu("kafka"), cpu("lmq")
    r = ratio(cl, ck)
    table.append(f"| broker CPU-seconds per GB moved (produced + consumed) | {dur} | | | all | {fmt(ck, 2)} | {fmt(cl, 2)} | {fmt(r, 2)} | |")
    flat.append({"measure": "broker CPU s/GB", "durability": dur, "kafka": ck, "lmq": cl, "ratio": r})

starts = [r for r in rows if r["kind"] == "startup"]
fills = {r["broker"]: r for r in rows if r["kind"] == "fill"}
start_ratio = None
for data in dict.fromkeys(r.get("data", "empty") for r in starts):
    pick = lambda broker: next((r for r in starts if r["broker"] == broker and r.get("data", "empty") == data), None)
    k, l = pick("kafka"), pick("lmq")
    sk, sl = (k or {}).get("ms"), (l or {}).get("ms")
    r = ratio(sl, sk)
    if data == "empty":
        start_ratio = r
        label = "empty data dir"
    else:
        gib = lambda row: f"{row['log_bytes'] / 2**30:.2f}" if row and row.get("log_bytes") else "?"
        label = f"data dir with {data} of log (Kafka {gib(k)} GiB, LMQ {gib(l)} GiB on disk), clean restart"
    note = ""
    if data != "empty":
        bad = [b for b in ("kafka", "lmq")
               if not (fills.get(b) and isinstance(fills[b].get("stored"), dict)
                       and fills[b]["stored"].get("log_end_total") == fills[b]["expected"])]
        note = "fill verified on both" if not bad else "fill NOT verified on " + ", ".join(bad)
    table.append(f"| start-up ms, exec to first Metadata answer, {label} | | | | | {fmt(sk, 0)} | {fmt(sl, 1)} | {fmt(r, 4)} | {note} |")
    flat.append({"measure": "start-up ms", "data": data, "kafka": sk, "lmq": sl, "ratio": r})


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


summary = {"produce": geomean(headline["produce"]), "consume": geomean(headline["consume"]),
           "p99": geomean(headline["p99"]), "rss": rss_ratio, "start": start_ratio}
final = " ".join(f"{k} {('n/a' if v is None else f'{v:.2f}')}" for k, v in summary.items())
verified = [m for m in measures if m.get("verified")]
bound = [m for m in measures if m.get("client_bound")]

c = ceilings
lines = [
    f"Run of {meta['started']} ({meta['mode']}), command `{meta['command']}`, LMQ {meta['lmq_commit']}, Apache Kafka {meta['kafka_version']}.",
    f"Machine: {meta['cpus']} cores ({meta['cpu_model']}), kernel {meta['kernel']}; broker on core {meta['broker_cpus']}, client on core {meta['client_cpus']}; "
    f"load average before {meta['load_before']}, after {end.get('load_after', '?')}.",
    f"Ceilings: loopback TCP {fmt(c['loopback_mb_per_s'], 0)} MB/s ({c['loopback_tool']}); disk sequential write "
    f"{fmt(c['disk_fdatasync_mb_per_s'], 0)} MB/s (1 MiB writes + fdatasync), {fmt(c['disk_buffered_mb_per_s'], 0)} MB/s buffered "
    f"(16 KiB, no sync), {fmt(c['disk_dsync_16k_mb_per_s'], 0)} MB/s (16 KiB writes, O_DSYNC).",
    "Workload: 1 KiB incompressible records (lmq-perf and rdkafka-perf: random bytes; ProducerPerformance: random base64 lines), "
    "no compression, RF=1, acks=1, batch 16 KiB, "
    f"{meta['seconds']} s per measurement. Durability (a): no fsync on either broker; (b): fsync per append before "
    "the answer (Kafka topic flush.messages=1, i.e. log.flush.interval.messages=1; LMQ [log] flush = \"every-batch\").",
    "Latency runs: lmq-perf, open loop at 25/50/80% of Kafka's lmq-perf maximum for the same settings, timed from "
    "each record's due instant (no coordinated omission), warm-up excluded. Consume: a full topic written by "
    "ProducerPerformance, read from the page cache, better of two passes (ConsumerPerformance: fetch rate, group "
    "join excluded). Each broker got an unmeasured warm-up load after its start (the JVM's JIT).",
    f"Counts: {len(verified)} of {len(measures)} runs verified (stored = acknowledged = consumed); "
    f"{len(bound)} flagged client-bound (client used >= 90% of its core: the figure is the client's ceiling, not the broker's).",
    "",
]
md = "\n".join(lines + table + ["", f"`{final}`", ""])
json.dump({"meta": meta, "end": end, "ceilings": ceilings, "startup": starts, "rows": flat,
           "measurements": measures, "summary": summary, "final_line": final},
          open(f"{dest}.json", "w"), indent=1, default=str)
open(f"{dest}.md", "w").write(md)
print(md)
print(final)
PY
