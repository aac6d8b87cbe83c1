#!/usr/bin/env bash
# The one test command (README, .ci/run): every test layer that exists today, on a fresh
# machine. It installs what it needs idempotently and caches it outside the repo.
#
#   scripts/test.sh            format, lints, unit/property/recovery tests, the fuzz seeds,
#                              script tests, the compatibility matrix with its broker
#                              scenarios, Kafka Connect and Kafka Streams on LMQ and on Kafka,
#                              Consul contract tests, the cluster fault tests
#                              (LMQ_CLUSTER_TESTS=1)
#
# Environment: LMQ_CACHE (default ~/.cache/lmq) for anything downloaded or built;
# LMQ_MATRIX_KAFKA=1 runs the compatibility matrix against Apache Kafka too;
# LMQ_MATRIX_DIFF=1 runs the whole matrix in differential mode (both brokers, every exchange
# compared field by field); without it a few cells check that the mode works.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
mkdir -p "$LMQ_CACHE"

LIB_NAME=scripts/test.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
step() { printf '\n==> %s\n' "$*"; }

need cargo "install Rust with rustup (https://rustup.rs) and retry"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, property, crash-recovery)"
cargo test --workspace --locked

step "script tests (bench/report.py, the bench report: python3 -m unittest)"
python3 -m unittest discover -s bench -p 'test_*.py'
step "fuzz seeds: every seed decodes, validates and opens as the fuzz targets see it (fuzz/ is its own workspace; stable Rust, no cargo-fuzz)"
cargo test --manifest-path fuzz/Cargo.toml --locked

step "metrics under load pass promtool check metrics"
cargo build -p lmq-broker --locked
scripts/check-metrics.sh target/debug/lmq

step "compatibility matrix: every client family x scenario against lmq serve (compat-tests/run; LMQ_MATRIX_KAFKA=1: against Apache Kafka too), then the broker scenarios (kill -9 and torn-tail durability, offsets across restarts, group members, Kafka CLI tools)"
matrix_args=()
[[ -n "${LMQ_MATRIX_KAFKA:-}" ]] && matrix_args+=(--kafka)
compat-tests/matrix.sh target/debug/lmq "${matrix_args[@]}"

step "differential mode: LMQ's and Kafka's answers compared field by field (LMQ_MATRIX_DIFF=1: every cell)"
if [[ -n "${LMQ_MATRIX_DIFF:-}" ]]; then
  compat-tests/matrix.sh target/debug/lmq --differential
else
  compat-tests/matrix.sh target/debug/lmq --differential --families lmq-native,kcat \
    --scenarios metadata,produce-acks-1,consume-beginning,group-rebalance,admin-configs
fi

step "ACLs with Kafka's kafka-acls tool: LMQ with the standard authorizer and Apache Kafka with StandardAuthorizer (compat-tests/acls.sh)"
compat-tests/acls.sh target/debug/lmq --kafka

step "Kafka Connect (distributed mode, FileStreamSource/Sink) and a Kafka Streams word count, on lmq serve and on Apache Kafka (compat-tests/apps.sh)"
compat-tests/apps.sh target/debug/lmq

step "log compaction through kcat: 1,000,000 records over 10,000 keys with tombstones; one record per live key, tombstones gone, the log within 2x of the live data (compat-tests/compaction.sh)"
compat-tests/compaction.sh target/debug/lmq

step "secured listeners with kcat and the lmq CLI: SSL with and without a client certificate, SASL_SSL SCRAM-SHA-512 and PLAIN, SASL_PLAINTEXT SCRAM-SHA-256, and the refusals (compat-tests/secure-clients.sh)"
compat-tests/secure-clients.sh target/debug/lmq

step "docs/OPERATIONS.md's secured set-up run as written, then kcat and confluent-kafka (SASL_SSL SCRAM-SHA-512), Kafka's Java client (SSL client certificate, SASL_SSL OAUTHBEARER) and franz-go (SASL_PLAINTEXT PLAIN) with their refusals, on LMQ and on Apache Kafka with the same certificates and users (compat-tests/secure-matrix.sh)"
compat-tests/secure-matrix.sh target/debug/lmq

step "native client tests against Apache Kafka 4.x too (the same test bodies)"
kafka_dir=$(mktemp -d)
kafka_port="$(free_port)"
trap 'scripts/kafka.sh broker stop "$kafka_dir" >/dev/null 2>&1 || true; rm -rf "$kafka_dir"' EXIT
scripts/kafka.sh broker start "$kafka_dir" "$kafka_port"
LMQ_KAFKA_BOOTSTRAP="127.0.0.1:$kafka_port" cargo test -p lmq-client --locked
scripts/kafka.sh broker stop "$kafka_dir"

step "coordinator contract tests against a real Consul (dev agent, ACL + TLS dev agent, 3-server cluster)"
# In a subshell: its own EXIT trap stops the agents without replacing the script's trap.
(
  scripts/consul.sh install
  consul_tmp="$(mktemp -d)"
  trap 'scripts/consul.sh dev stop "$consul_tmp/dev" >/dev/null 2>&1 || true
        scripts/consul.sh dev stop "$consul_tmp/secured" >/dev/null 2>&1 || true
        scripts/consul.sh cluster stop "$consul_tmp/cluster" >/dev/null 2>&1 || true
        rm -rf "$consul_tmp"' EXIT
  dev_http="$(scripts/consul.sh dev start "$consul_tmp/dev")"
  # ACLs with default deny and https with client certificates: the contract again, through
  # LMQ's policy and token (LMQ_CONSUL_ACL_* in its env file).
  scripts/consul.sh dev start "$consul_tmp/secured" --acl --tls >/dev/null
  cluster_http="$(scripts/consul.sh cluster start "$consul_tmp/cluster" | paste -sd, -)"
  set -a
  # shellcheck disable=SC1091
  . "$consul_tmp/secured/env"
  set +a
  LMQ_CONSUL_HTTP="$dev_http" LMQ_CONSUL_CLUSTER="$cluster_http" \
    LMQ_CONSUL_CLUSTER_DIR="$consul_tmp/cluster" \
    cargo test -p lmq-coord --locked --test consul -- --test-threads=1
)

step "replicated cluster tests: leaders killed, paused and cut off (network namespaces) under load; partitions, brokers and replicas changed online"
# Its own Consul servers and brokers (scripts/cluster.sh), stopped by the test itself.
LMQ_CLUSTER_TESTS=1 LMQ_FAULT_ROUNDS="${LMQ_FAULT_ROUNDS:-2}" \
  cargo test -p lmq-broker --locked --test cluster_faults -- --nocapture --test-threads=1

step "real Kafka clients through a leader kill on the cluster (confluent-kafka, Java, kcat)"
compat-tests/cluster.sh target/debug/lmq

step "transactions under faults: Kafka's TransactionalMessageCopier copies 10,000 records exactly once on a 3-broker LMQ cluster while transaction coordinators, partition leaders, the group coordinator and a copier are killed; the same without faults on Apache Kafka (compat-tests/txn-copier.sh; LMQ_TXN_COPIER_RECORDS=100000 LMQ_TXN_COPIER_ROUNDS=5 for the long run)"
compat-tests/txn-copier.sh lmq --binary target/debug/lmq
compat-tests/txn-copier.sh kafka
