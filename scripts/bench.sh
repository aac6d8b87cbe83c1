#!/usr/bin/env bash
# LMQ against Apache Kafka on this machine, as LMQ ÷ Kafka ratios measured in one run.
#
#   scripts/bench.sh [--quick] [--dry-run] [--cleaner-only]
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
# Then LMQ's log cleaner alone (no Kafka counterpart): the throughput and peak RSS of one pass
# over a compacted log (storage/examples/clean_throughput.rs, 200 MB; 100 MB with --quick),
# and produce latency with the cleaner on against off: a broker with `[cleaner] enable` true or
# false (backoff_ms 1000 either way) takes a keyed writer (10,000 rec/s over 10,000 keys, 1 KiB)
# into a compacted topic (16 MiB segments, min.cleanable.dirty.ratio 0.01) for the whole run
# while lmq-perf measures produce to another topic (8 partitions, 10,000 rec/s); off and on
# alternate for three rounds, and the row is p99(on) ÷ p99(off) (issue 19's target: <= 1.2).
# --cleaner-only runs only these (no Apache Kafka, no comparison runs; about 3 minutes; report
# in bench/results/cleaner-<mode>.{md,json}).
#
# --dry-run prints every run the mode would make (tag, tool, command; broker addresses and
# Kafka-derived counts as placeholders) and exits without building or starting anything.
#
# Output (bench/report.py, tested by bench/test_report.py): the ratio table (markdown) and bench/results/<mode>.{md,json}; the last line is
#   produce x.xx consume x.xx p99 x.xx rss x.xx start x.xx      (LMQ ÷ Kafka)
# where produce/consume are geometric means over the (a) runs of every tool, p99 the
# geometric mean of end-to-end p99 at 50% load under (a), rss the peak under load and start
# the empty-data-dir start-up.
#
# Environment: LMQ_BENCH_BROKER (an lmq binary to measure instead of target/release/lmq, for an
# A/B against another commit's build), LMQ_BENCH_DIR (work dir; its run/ subdir is removed at
# start and its data at
# exit), BENCH_SECONDS (override the per-measurement seconds, an integer), BENCH_STARTUP_GIB
# (GiB of log for the second start-up), BENCH_CLEANER_IO_MAX (bytes per second: the cleaner-on
# broker's [cleaner] io_bytes_per_second_max; unset: unlimited, Kafka's default), BENCH_BROKER_CPUS / BENCH_CLIENT_CPUS (taskset lists;
# default 0 and 1 on a machine with 2+ cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

LIB_NAME=scripts/bench.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# Timestamped: the run is long and its log is read afterwards.
log() { echo "[bench $(date +%T)] $*" >&2; }

MODE=full
DRY_RUN=0
CLEANER_ONLY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
  --quick) MODE=quick; shift ;;
  --dry-run) DRY_RUN=1; shift ;;
  --cleaner-only) CLEANER_ONLY=1; shift ;;
  -h | --help) print_header; exit 0 ;;
  *) echo "usage: scripts/bench.sh [--quick] [--dry-run] [--cleaner-only] [--help]" >&2; exit 2 ;;
  esac
done

if [[ "$MODE" == quick ]]; then
  PARTS=(1 8) LINGERS=(5) LATENCY_DURS=" a " CONSUME_DURS=" a " SECONDS_PER=10 WARMUP_S=2 ZSTD=0
  WARMUP_LOAD_S=5 STARTUP_GIB=1 CLEANER_MB=100
else
  PARTS=(1 8 64) LINGERS=(0 5) LATENCY_DURS=" a b " CONSUME_DURS=" a b " SECONDS_PER=15 WARMUP_S=3
  ZSTD=1 WARMUP_LOAD_S=15 STARTUP_GIB=5 CLEANER_MB=200
fi
# The cleaner rows (see the header): the compacted topic's writer, the measured load, rounds.
# 16 MiB segments: the writer rolls one every 1.6 s and each roll gives the cleaner a pass
# (1 MiB segments, ten rolls a second, put each roll's directory fsync on the produce path ten
# times a second: both modes' p99 was then the rolls', hundreds of ms on the shared machine).
CLEANER_WRITER_RATE=10000 CLEANER_KEYS=10000 CLEANER_RATE=10000 CLEANER_PARTS=8
CLEANER_SEGMENT_BYTES=16777216 CLEANER_ROUNDS=3 CLEANER_LEAD_S=5
STARTUP_GIB="${BENCH_STARTUP_GIB:-$STARTUP_GIB}"
if [[ -n "${BENCH_SECONDS:-}" ]]; then
  # Shorter runs keep a fifth of their time as latency warm-up.
  SECONDS_PER="$BENCH_SECONDS"
  WARMUP_S="$(awk -v s="$SECONDS_PER" -v w="$WARMUP_S" 'BEGIN {print (s / 5 < w ? s / 5 : w)}')"
fi
LOADS=(25 50 80)
RECORD=1024
BATCH=16384

if ((!DRY_RUN)); then
  for tool in python3 taskset timeout; do
    need "$tool" "install it and retry"
  done
  ((CLEANER_ONLY)) || need java "install it and retry"
fi

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
# LMQ_BENCH_BROKER: another lmq binary to measure (an A/B against an older commit's build).
LMQ="${LMQ_BENCH_BROKER:-$ROOT/target/release/lmq}"
PERF="$ROOT/target/release/lmq-perf"
JSONL="$RUN/measurements.jsonl"

# ---- processes we start, and their cleanup ---------------------------------------------
BPID="" BROKER="" KDIR="" LMQ_PID="" SAMPLER="" WAITER="" IPERF=""
stop_sampler() {
  if [[ -n "$SAMPLER" ]]; then
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
  fi
}
stop_lmq() {
  [[ -n "$LMQ_PID" ]] || return 0
  stop_pid "$LMQ_PID" 30 || true
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
  # The logs stay in $RUN; the record data (gigabytes) goes, with the leftovers of a
  # clean_throughput run cut short (its tempdir).
  rm -rf "$RUN"/kafka/data "$RUN"/lmq-*/data "$RUN/dd.bin" "$RUN"/.tmp* 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# The runs of one configuration (durability DUR, P partitions, linger L ms, CODEC), as a
# table: NAME KIND TOOL STAGE. NAME is the run's tag suffix and names its plan_NAME function,
# which sets the run's command (CMD), the topic made before it (CREATE) and removed after it
# (REMOVE), the topic whose stored count it records (STORED), its extra measurement fields
# (FIELDS) and its log note (NOTE). STAGE orders them: `max` and `produce` runs for every
# configuration, `consume` runs once per pass (the first linger, no codec, durabilities of
# CONSUME_DURS), `latency` runs once per load of LOADS (no codec, durabilities of
# LATENCY_DURS).
RUNS=(
  "lmqperf-max produce lmq-perf max"
  "pp produce ProducerPerformance produce"
  "rdkafka produce rdkafka-perf produce"
  "cp consume ConsumerPerformance consume"
  "lmqperf-consume consume lmq-perf consume"
  "lmqperf-r latency lmq-perf latency"
)

# lmq-perf at saturation (produce + consume in one process); on Kafka its rate sets the
# record counts and latency loads of the other runs.
plan_lmqperf_max() {
  CMD=("$PERF" run --bootstrap "$ADDR" --topic "lp-$base" --partitions "$p"
    "${TOPIC_CONFIG[@]}" --record-size "$RECORD" --batch-bytes "$BATCH" --linger-ms "$l"
    --codec "$codec" --rate 0 --duration-s "$SECONDS_PER" --warmup-s "$WARMUP_S")
  REMOVE="lp-$base" FIELDS=(linger_ms="$l" codec="$codec")
}
# ProducerPerformance: the same record count on both brokers, half of what lmq-perf sent
# Kafka per second times the measurement seconds (the Java client on one core is about that
# fast); its topic stays for the consume runs.
plan_pp() {
  CMD=("${JAVA_TOOL[@]}" org.apache.kafka.tools.ProducerPerformance
    --bootstrap-server "$ADDR" --topic "pp-$base" --num-records "$n" --payload-file "$RUN/payloads.txt"
    --throughput -1 --command-property acks=1 "linger.ms=$l" "batch.size=$BATCH"
    "compression.type=$codec")
  CREATE="pp-$base" STORED="pp-$base" NOTE=" ($n records)"
  FIELDS=(linger_ms="$l" codec="$codec" expected="$n")
}
# librdkafka's producer (the C client most non-Java clients wrap), same records and settings.
plan_rdkafka() {
  CMD=("$RDPERF" "$ADDR" "rk-$base" "$n" "$RECORD" "$l" "$BATCH" 1 "$codec")
  CREATE="rk-$base" STORED="rk-$base" REMOVE="rk-$base" NOTE=" ($n records)"
  FIELDS=(linger_ms="$l" codec="$codec" expected="$n")
}
# Consume: each tool reads ProducerPerformance's whole topic once per pass (a fresh group
# each time); the report keeps the better pass of each, which filters out a passing
# disturbance of the shared machine.
plan_cp() {
  CMD=("${JAVA_TOOL[@]}" org.apache.kafka.tools.ConsumerPerformance
    --bootstrap-server "$ADDR" --topic "pp-$base" --num-records "$n" --group "cp-$base-$pass"
    --timeout 30000)
  FIELDS=(pass="$pass" expected="$n")
}
plan_lmqperf_consume() {
  CMD=("$PERF" consume --bootstrap "$ADDR" --topic "pp-$base")
  FIELDS=(pass="$pass" expected="$n")
}
# Latency: lmq-perf open loop at a fixed share of Kafka's maximum.
plan_lmqperf_r() {
  CMD=("$PERF" run --bootstrap "$ADDR" --topic "lr-$base-$pct" --partitions "$p"
    "${TOPIC_CONFIG[@]}" --record-size "$RECORD" --batch-bytes "$BATCH" --linger-ms "$l"
    --rate "$rate" --duration-s "$SECONDS_PER" --warmup-s "$WARMUP_S")
  REMOVE="lr-$base-$pct" NOTE=" ($rate records/s)"
  FIELDS=(linger_ms="$l" codec=none load_pct="$pct" target_rate="$rate")
}

# run_stage STAGE: every run of RUNS in STAGE, in table order, with measure_config's locals
# (dur p l codec base limit n pass pct rate).
run_stage() {
  local row name kind tool stage tag status stored
  for row in "${RUNS[@]}"; do
    read -r name kind tool stage <<<"$row"
    [[ "$stage" == "$1" ]] || continue
    CMD=() CREATE="" REMOVE="" STORED="" FIELDS=() NOTE=""
    read -r -a TOPIC_CONFIG <<<"$(topic_config "$dur")"
    "plan_${name//-/_}"
    tag="$BROKER-$base-$name"
    [[ "$stage" != consume ]] || tag+="-$pass"
    [[ "$stage" != latency ]] || tag+="$pct"
    if ((DRY_RUN)); then
      printf '%s [%s %s%s] %s\n' "$tag" "$kind" "$tool" "${CREATE:+, topic $CREATE made first}" "${CMD[*]}"
      continue
    fi
    [[ -z "$CREATE" ]] || "$PERF" create-topic --bootstrap "$ADDR" --topic "$CREATE" \
      --partitions "$p" "${TOPIC_CONFIG[@]}" >/dev/null
    log "$tag$NOTE"
    status=0
    client "$tag" "$limit" "${CMD[@]}" || status=$?
    if [[ -n "$STORED" ]]; then
      stored="$("$PERF" offsets --bootstrap "$ADDR" --topic "$STORED" 2>/dev/null)" || stored='{}'
      FIELDS+=(stored="$stored")
    fi
    record kind="$kind" broker="$BROKER" durability="$dur" tool="$tool" partitions="$p" \
      "${FIELDS[@]}" status="$status" client_util="$CLIENT_UTIL" broker_cpu_s="$BROKER_CPU_S" \
      out="$RUN/out/$tag.out"
    [[ -z "$REMOVE" ]] || delete_topic "$REMOVE"
    if [[ "$stage" == max && "$BROKER" == kafka ]]; then
      rate=0
      ((status == 0)) && rate="$(json_get "$RUN/out/$tag.out" produce_records_per_s)"
      KAFKA_MAX["$dur/$p/$l/$codec"]="${rate%.*}"
    fi
  done
}

measure_config() { # DUR P L CODEC
  local dur="$1" p="$2" l="$3" codec="$4" limit n pass pct rate kmax
  local base="$dur-p$p-l$l-$codec"
  limit=$((SECONDS_PER * 4 + 120))
  run_stage max
  kmax="${KAFKA_MAX["$dur/$p/$l/$codec"]:-0}"
  n=$((kmax * SECONDS_PER / 2))
  ((n < 100000)) && n=100000
  ((n > 5000000)) && n=5000000
  run_stage produce
  if [[ "$l" == "${LINGERS[0]}" && "$codec" == none && "$CONSUME_DURS" == *" $dur "* ]]; then
    for pass in 1 2; do run_stage consume; done
  fi
  ((DRY_RUN)) || delete_topic "pp-$base"
  if [[ "$LATENCY_DURS" == *" $dur "* && "$codec" == none ]]; then
    for pct in "${LOADS[@]}"; do
      rate=$((kmax * pct / 100))
      ((DRY_RUN && rate == 0)) && rate="$pct%-of-Kafka's-maximum"
      [[ "$rate" != 0 ]] || continue
      run_stage latency
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

# ---- LMQ's log cleaner ---------------------------------------------------------------------
CLEAN_THROUGHPUT="$ROOT/target/release/examples/clean_throughput"

# One pass over a compacted log of CLEANER_MB MB (the storage example, on the broker core, its
# log under $RUN: the brokers' filesystem).
measure_cleaner_throughput() {
  local tag=lmq-cleaner-throughput status=0
  if ((DRY_RUN)); then
    printf '%s [cleaner_throughput clean_throughput] TMPDIR=RUN %s %s\n' "$tag" "$CLEAN_THROUGHPUT" "$CLEANER_MB"
    return
  fi
  log "$tag: one cleaner pass over $CLEANER_MB MB of compacted log"
  TMPDIR="$RUN" timeout 600 taskset -c "$BROKER_CPUS" "$CLEAN_THROUGHPUT" "$CLEANER_MB" \
    >"$RUN/out/$tag.out" 2>"$RUN/out/$tag.err" || status=$?
  ((status == 0)) || log "$tag failed ($status): $(tail -n 3 "$RUN/out/$tag.err" | tr '\n' ' ')"
  record kind=cleaner_throughput megabytes="$CLEANER_MB" status="$status" out="$RUN/out/$tag.out"
}

admin_metric() { # ADMIN NAME: the value of an unlabelled sample of the broker's /metrics
  python3 -c '
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode()
print(next((line.split()[-1] for line in text.splitlines() if line.startswith(sys.argv[2] + " ")), "0"))' "$1" "$2"
}

# One round of one mode (on|off): an LMQ with the cleaner on or off, the compacted topic's
# writer for the whole run (CLEANER_LEAD_S before the measured load on, so dirty segments
# wait), the measured produce load, the cleaner's passes and reads during it.
cleaner_latency_run() { # ROUND MODE
  local round="$1" mode="$2" dir="$RUN/lmq-cleaner" enable=false admin writer status=0 writer_status=0
  local tag="lmq-cleaner-$2-$1" passes0 passes1 read0 read1
  [[ "$mode" == on ]] && enable=true
  local writer_cmd=("$PERF" run --bootstrap "\$ADDR" --topic compacted --partitions 1
    --config cleanup.policy=compact --config segment.bytes="$CLEANER_SEGMENT_BYTES"
    --config min.cleanable.dirty.ratio=0.01 --keys "$CLEANER_KEYS" --record-size "$RECORD"
    --rate "$CLEANER_WRITER_RATE" --duration-s $((CLEANER_LEAD_S + SECONDS_PER + 5)) --warmup-s 0
    --no-consume)
  local measure_cmd=("$PERF" run --bootstrap "\$ADDR" --topic measured --partitions "$CLEANER_PARTS"
    --record-size "$RECORD" --batch-bytes "$BATCH" --linger-ms 5 --rate "$CLEANER_RATE"
    --duration-s "$SECONDS_PER" --warmup-s "$WARMUP_S")
  if ((DRY_RUN)); then
    printf '%s [cleaner_latency, [cleaner] enable = %s] writer: %s; measured: %s\n' "$tag" "$enable" \
      "${writer_cmd[*]}" "${measure_cmd[*]}"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  ADDR="127.0.0.1:$(free_port)"
  admin="127.0.0.1:$(free_port)"
  writer_cmd=("${writer_cmd[@]/\$ADDR/$ADDR}") measure_cmd=("${measure_cmd[@]/\$ADDR/$ADDR}")
  printf '[group]\ninitial_rebalance_delay_ms = 0\n\n[cleaner]\nenable = %s\nbackoff_ms = 1000\n' \
    "$enable" >"$dir/lmq.toml"
  [[ "$mode" != on || -z "${BENCH_CLEANER_IO_MAX:-}" ]] ||
    echo "io_bytes_per_second_max = $BENCH_CLEANER_IO_MAX" >>"$dir/lmq.toml"
  log "$tag: LMQ with [cleaner] enable = $enable on $ADDR (admin $admin)"
  taskset -c "$CLIENT_CPUS" "$PERF" startup --bootstrap "$ADDR" --timeout-s 60 --log "$dir/lmq.log" \
    -- taskset -c "$BROKER_CPUS" "$LMQ" serve --config "$dir/lmq.toml" --data-dir "$dir/data" \
    --listen "$ADDR" --admin-listen "$admin" >"$RUN/out/$tag-startup.json"
  LMQ_PID="$(json_get "$RUN/out/$tag-startup.json" pid)"
  BPID="$LMQ_PID"
  timeout $((CLEANER_LEAD_S + SECONDS_PER + 180)) taskset -c "$CLIENT_CPUS" "${writer_cmd[@]}" \
    >"$RUN/out/$tag-writer.out" 2>"$RUN/out/$tag-writer.err" &
  writer=$!
  sleep "$CLEANER_LEAD_S"
  passes0="$(admin_metric "$admin" lmq_cleaner_passes_total)"
  read0="$(admin_metric "$admin" lmq_cleaner_read_bytes_total)"
  client "$tag" $((SECONDS_PER * 4 + 120)) "${measure_cmd[@]}" || status=$?
  passes1="$(admin_metric "$admin" lmq_cleaner_passes_total)"
  read1="$(admin_metric "$admin" lmq_cleaner_read_bytes_total)"
  wait "$writer" || writer_status=$?
  ((writer_status == 0)) || log "$tag: the compacted topic's writer failed ($writer_status)"
  record kind=cleaner_latency cleaner="$mode" round="$round" status="$status" \
    writer_status="$writer_status" partitions="$CLEANER_PARTS" target_rate="$CLEANER_RATE" \
    writer_rate="$CLEANER_WRITER_RATE" keys="$CLEANER_KEYS" io_max="${BENCH_CLEANER_IO_MAX:-null}" \
    passes="$(python3 -c 'import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))' "$passes0" "$passes1")" \
    cleaner_read_bytes="$(python3 -c 'import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))' "$read0" "$read1")" \
    client_util="$CLIENT_UTIL" broker_cpu_s="$BROKER_CPU_S" out="$RUN/out/$tag.out" \
    log_locked_ms_max="$(grep -o 'log_locked_ms=[0-9]*' "$dir/lmq.log" | cut -d= -f2 | sort -n | tail -n 1)"
  stop_lmq
  rm -rf "$dir/data"
  cp "$dir/lmq.log" "$RUN/out/$tag-broker.log"
}

measure_cleaner() {
  local round
  measure_cleaner_throughput
  for round in $(seq 1 "$CLEANER_ROUNDS"); do
    cleaner_latency_run "$round" off
    cleaner_latency_run "$round" on
  done
}

# ---- the run ---------------------------------------------------------------------------
if ((DRY_RUN)); then
  # Placeholders for what a real run learns on the way.
  ADDR=BROKER_ADDRESS RDPERF=rdkafka-perf JAVA_TOOL=(java)
  if ((!CLEANER_ONLY)); then
    for BROKER in kafka lmq; do
      for dur in a b; do measure_durability "$dur"; done
    done
  fi
  measure_cleaner
  exit 0
fi
log "building target/release/lmq, lmq-perf and the clean_throughput example, and rdkafka-perf (bench/rdkafka-perf.c)"
cargo build --release -q -p lmq-broker -p lmq-bench
cargo build --release -q -p lmq-storage --example clean_throughput
if ((!CLEANER_ONLY)); then
  [[ -f /usr/include/librdkafka/rdkafka.h ]] || apt_install librdkafka-dev
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
fi
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
((CLEANER_ONLY)) && COMMAND+=" --cleaner-only"
KAFKA_VERSION=none
((CLEANER_ONLY)) || KAFKA_VERSION="$(scripts/kafka.sh version)"
record kind=meta mode="$MODE" started="$STARTED_AT" command="$COMMAND" \
  kafka_version="$KAFKA_VERSION" cpus="$NCPU" broker_cpus="$BROKER_CPUS" \
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

if ((!CLEANER_ONLY)); then
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
fi

# LMQ's log cleaner (its own brokers).
BROKER=lmq
measure_cleaner

top -bn1 | head -n 15 >"$RUN/top-after.txt" || true
record kind=end finished="$(date -u +%Y-%m-%dT%H:%M:%SZ)" load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the report ----------------------------------------------------------------------------
# A --cleaner-only run keeps the comparison's results of its mode.
REPORT="$RESULTS/$MODE"
((CLEANER_ONLY)) && REPORT="$RESULTS/cleaner-$MODE"
python3 bench/report.py "$RUN" "$REPORT" "$RECORD"
