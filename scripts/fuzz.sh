#!/usr/bin/env bash
# Fuzz LMQ's decoders with cargo-fuzz (libFuzzer), one target after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   run every target for that long (default 60)
#   scripts/fuzz.sh --capture              re-record fuzz/seeds from real clients (kcat,
#                                          confluent-kafka) talking to `lmq serve`
#
# Targets (fuzz/fuzz_targets/): request (lmq_wire::decode_request), response
# (lmq_wire::decode_response, what clients and the replica fetcher read), record_batch (BatchView,
# the timestamp search, decompression) and storage_recovery (PartitionLog::open over one
# arbitrary .log segment). Each run starts from the working corpus
# $LMQ_CACHE/fuzz-corpus/<target> (LMQ_CACHE defaults to ~/.cache/lmq), into which the seeds
# of fuzz/seeds/<target> are copied first, and grows it. Prints one summary line per target
# and exits non-zero when a target found a crash; the crash input is under
# fuzz/artifacts/<target>/ and its path is in the output ('crash input: ...').
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz passes.
# cargo-fuzz is installed with `cargo install cargo-fuzz --locked` when `cargo fuzz` is
# missing. AddressSanitizer is used when it builds; otherwise the script says so and falls
# back to --sanitizer none.
#
# Environment:
#   LMQ_FUZZ_TARGETS     targets to run, space-separated (default: all four)
#   LMQ_FUZZ_SANITIZER   address (default) or none
#   LMQ_FUZZ_ARGS        extra libFuzzer flags, e.g. "-fork=1 -ignore_ooms=1 -ignore_crashes=1"
#                        to keep going past known findings (fork mode), "-max_len=65536"
#   LMQ_FUZZ_STRICT_PANICS=1  request and response targets: abort on panics decode_request or
#                        decode_response contains too
#   LMQ_FUZZ_BROKER      --capture: this lmq binary instead of a release build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
export RUSTC_BOOTSTRAP=1
ALL_TARGETS=(request response record_batch storage_recovery)
read -r -a TARGETS <<<"${LMQ_FUZZ_TARGETS:-${ALL_TARGETS[*]}}"
SANITIZER="${LMQ_FUZZ_SANITIZER:-address}"
read -r -a EXTRA_ARGS <<<"${LMQ_FUZZ_ARGS:-}"

LIB_NAME=scripts/fuzz.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() {
  print_header >&2
  exit 2
}

# ------------------------------------------------------------------------------ capture
# Globals: the EXIT trap reads them after capture() returned.
CAPTURE_WORK="" BROKER_PID="" PROXY_PID=""
cleanup_capture() {
  local pid
  for pid in $PROXY_PID $BROKER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "$CAPTURE_WORK" ]] && rm -rf "$CAPTURE_WORK"
}

capture() {
  local work broker_port proxy_port py codec i port
  need python3 "apt-get install -y python3"
  command -v kcat >/dev/null || apt_install kcat
  local lmq="${LMQ_FUZZ_BROKER:-target/release/lmq}"
  if [[ -z "${LMQ_FUZZ_BROKER:-}" ]]; then
    say "building the broker (cargo build --release -p lmq-broker)"
    cargo build --release -p lmq-broker
  fi
  work="$(mktemp -d "${TMPDIR:-/tmp}/lmq-fuzz-capture.XXXXXX")"
  CAPTURE_WORK="$work"
  trap cleanup_capture EXIT
  broker_port="$(free_port)"
  proxy_port="$(free_port)"
  while [[ "$proxy_port" == "$broker_port" ]]; do proxy_port="$(free_port)"; done
  say "broker on 127.0.0.1:$broker_port, recording proxy on 127.0.0.1:$proxy_port (advertised)"
  local admin=()
  # No admin HTTP listener when the binary has one: its fixed default port may be taken.
  if [[ "$("$lmq" serve --help 2>/dev/null)" == *--admin-listen* ]]; then
    admin=(--admin-listen off)
  fi
  "$lmq" serve --data-dir "$work/data" --listen "127.0.0.1:$broker_port" \
    --advertised-listener "127.0.0.1:$proxy_port" "${admin[@]}" >"$work/broker.log" 2>&1 &
  BROKER_PID=$!
  python3 fuzz/capture_proxy.py proxy --listen "127.0.0.1:$proxy_port" \
    --upstream "127.0.0.1:$broker_port" --out "$work/raw" >"$work/proxy.log" 2>&1 &
  PROXY_PID=$!
  for port in "$broker_port" "$proxy_port"; do
    wait_for_port "$port" 10 "$BROKER_PID" ||
      alive "$BROKER_PID" || die "the broker exited: $(tail -c 600 "$work/broker.log")"
  done
  local bootstrap="127.0.0.1:$proxy_port"

  say "kcat: metadata, a producer per codec, consumers from the beginning and by timestamp"
  timeout 30 kcat -b "$bootstrap" -L -X client.id=kcat-metadata >/dev/null 2>&1 || say "kcat -L failed"
  for codec in none gzip snappy lz4 zstd; do
    for i in $(seq 1 12); do
      printf 'key-%s-%s:kcat %s record %s %s\n' "$codec" "$i" "$codec" "$i" "$(printf 'x%.0s' $(seq 1 $((i * 7))))"
    done >"$work/$codec.in"
    timeout 30 kcat -b "$bootstrap" -P -t "kcat-$codec" -p 0 -z "$codec" -K : \
      -H "codec=$codec" -H "bin=$(printf '\x01\x02')" -X "client.id=kcat-produce-$codec" \
      -l "$work/$codec.in" >/dev/null 2>&1 || say "kcat produce $codec failed"
    timeout 30 kcat -b "$bootstrap" -C -t "kcat-$codec" -p 0 -o beginning -e \
      -X client.id=kcat-consume >/dev/null 2>&1 || say "kcat consume $codec failed"
  done
  timeout 30 kcat -b "$bootstrap" -C -t kcat-lz4 -p 0 -o "s@$(($(date +%s) * 1000 - 60000))" -e \
    -X client.id=kcat-timestamp >/dev/null 2>&1 || say "kcat consume by timestamp failed"

  py="$LMQ_CACHE/venv/bin/python"
  if [[ -x "$py" ]] && "$py" -c 'import confluent_kafka' 2>/dev/null; then
    say "confluent-kafka: admin, idempotent producer per codec, group consumer"
    timeout 180 "$py" fuzz/capture_clients.py "$bootstrap" || say "confluent-kafka clients failed"
  else
    say "no confluent-kafka in $LMQ_CACHE/venv: kcat frames only (compat-tests/matrix.sh creates the venv)"
  fi

  kill -TERM "$PROXY_PID" "$BROKER_PID" 2>/dev/null || true
  wait "$PROXY_PID" "$BROKER_PID" 2>/dev/null || true
  PROXY_PID="" BROKER_PID=""
  [[ -d "$work/raw" ]] || die "the proxy recorded nothing: $(tail -c 600 "$work/proxy.log")"
  say "$(find "$work/raw" -type f | wc -l) frames recorded; selecting seeds"
  mkdir -p fuzz/seeds/request fuzz/seeds/response fuzz/seeds/record_batch fuzz/seeds/storage_recovery
  rm -f fuzz/seeds/request/*.bin fuzz/seeds/response/*.response fuzz/seeds/record_batch/*.batch \
    fuzz/seeds/storage_recovery/*.log
  python3 fuzz/capture_proxy.py select "$work/raw" fuzz/seeds/request --versions wire/src/versions.rs
  python3 fuzz/capture_proxy.py select "$work/raw" fuzz/seeds/response --responses \
    --versions wire/src/versions.rs
  python3 fuzz/capture_proxy.py batches "$work/data" fuzz/seeds/record_batch fuzz/seeds/storage_recovery
  for t in "${ALL_TARGETS[@]}"; do
    echo "fuzz/seeds/$t: $(find "fuzz/seeds/$t" -type f | wc -l) files, $(du -sk "fuzz/seeds/$t" | cut -f1) KiB"
  done
  say "checking the seeds: cargo test -p lmq-wire --test decode_corpus, cargo test in fuzz/"
  cargo test -q -p lmq-wire --test decode_corpus
  cargo test -q --manifest-path fuzz/Cargo.toml
}

# ------------------------------------------------------------------------------ fuzzing
ensure_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then
    return
  fi
  say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  local started=$SECONDS
  cargo install cargo-fuzz --locked
  say "cargo-fuzz installed in $((SECONDS - started)) s"
}

build() {
  say "building the fuzz targets (sanitizer: $SANITIZER)"
  if cargo fuzz build --sanitizer "$SANITIZER"; then
    return
  fi
  [[ "$SANITIZER" == none ]] && die "cargo fuzz build failed even without a sanitizer"
  say "WARNING: the $SANITIZER sanitizer build failed; falling back to --sanitizer none (no ASan: memory errors in unsafe code go unseen)"
  SANITIZER=none
  cargo fuzz build --sanitizer none || die "cargo fuzz build --sanitizer none failed"
}

# stat NAME LOG: the value of libFuzzer's final 'stat::NAME:' line
fuzz_stat() { sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -n 1; }

run_target() {
  local target="$1" seconds="$2" corpus="$LMQ_CACHE/fuzz-corpus/$1" log="$LMQ_CACHE/fuzz-logs/$1.log"
  local started=$SECONDS rc=0 crash runs rate files panics found marker
  mkdir -p "$corpus" "$(dirname "$log")" "fuzz/artifacts/$target"
  marker="$(mktemp)"
  if [[ -d "fuzz/seeds/$target" ]]; then
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  fi
  say "fuzzing $target for $seconds s (corpus $corpus, $(find "$corpus" -type f | wc -l) files; full log $log)"
  # libFuzzer's per-input lines (NEW, REDUCE) go to the log only.
  cargo fuzz run --sanitizer "$SANITIZER" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${EXTRA_ARGS[@]}" \
    >"$log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    # The finding: from the first error line (libFuzzer, ASan, an escaped panic) to the end.
    local first_error='^==[0-9]+== ?ERROR|^ERROR: libFuzzer|^thread .* panicked at|^lmq-fuzz: panic|deadly signal'
    awk -v start="$first_error" '$0 ~ start { found = 1 } found && !/^#[0-9]+[ \t]+(NEW|REDUCE)/' "$log" >&2
    grep -qE "$first_error" "$log" || tail -n 40 "$log" >&2
  else
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::' "$log" >&2 || true
  fi
  runs="$(fuzz_stat number_of_executed_units "$log")"
  rate="$(fuzz_stat average_exec_per_sec "$log")"
  files="$(find "$corpus" -type f | wc -l)"
  panics="$(grep -c '^lmq-fuzz: panic' "$log" || true)"
  crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
  # Fork mode (-fork=N in LMQ_FUZZ_ARGS) keeps going and leaves many; count them.
  found="$(find "fuzz/artifacts/$target" -type f -newer "$marker" | wc -l)"
  [[ -z "$crash" && $found -gt 0 ]] && crash="$(ls -t "fuzz/artifacts/$target"/* | head -n 1)"
  rm -f "$marker"
  local line="fuzz $target: "
  if [[ $rc -eq 0 ]]; then
    line+="ok"
  elif [[ -n "$crash" ]]; then
    line+="CRASH"
  else
    line+="FAILED (exit $rc, no crash input; see $log)"
  fi
  line+=" after $((SECONDS - started)) s, ${runs:-?} runs, ${rate:-?} exec/s, corpus $files files, sanitizer $SANITIZER"
  if [[ "$panics" != 0 ]]; then
    line+=", $panics panics logged ('lmq-fuzz: panic' lines; contained by decode_request/decode_response unless it crashed)"
  fi
  [[ $found -gt 1 ]] && line+=", $found crash inputs in fuzz/artifacts/$target/"
  [[ -n "$crash" ]] && line+="; crash input: $crash"
  SUMMARY+=("$line")
  return "$rc"
}

main() {
  local seconds=60
  case "${1:-}" in
    --capture) capture; return ;;
    -h | --help) usage ;;
    "") ;;
    *) [[ "$1" =~ ^[0-9]+$ ]] || usage; seconds="$1" ;;
  esac
  command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup"
  for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${ALL_TARGETS[*]})"
  done
  ensure_cargo_fuzz
  build
  SUMMARY=()
  local failed=0
  for t in "${TARGETS[@]}"; do
    run_target "$t" "$seconds" || failed=1
  done
  echo
  printf '%s\n' "${SUMMARY[@]}"
  return "$failed"
}

main "$@"
