#!/usr/bin/env bash
# Longer replicated-cluster fault runs than scripts/test.sh's short form
# (broker/tests/cluster_faults.rs: 3 Consul servers + 3 brokers, leaders killed with SIGKILL
# and paused past their session, the Consul leader killed, group offsets across a
# coordinator loss):
#
#   scripts/fault-test.sh [ROUNDS]     default 10 rounds
#
# 1. idempotent acks=all producers: no acknowledged record may be lost, duplicated or
#    reordered (the test fails otherwise);
# 2. the same schedule with acks=1 and no idempotence: losses are possible and reported
#    (the checker must be able to find them; a run that never shows any is not trusted).
# Failover times are printed by each run. Uses scripts/cluster.sh's default addresses
# (LMQ_CLUSTER_IP_BASE / LMQ_CLUSTER_CONSUL_PORT move them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS="${1:-10}"
run() {
  LMQ_CLUSTER_TESTS=1 cargo test -q -p lmq-broker --locked --test cluster_faults acknowledged -- \
    --nocapture --test-threads=1 2>&1 | grep -v "not acknowledged"
}
echo "==> acks=all, $ROUNDS rounds"
LMQ_FAULT_ROUNDS="$ROUNDS" run
echo "==> acks=1, $ROUNDS rounds (losses expected and reported)"
LMQ_FAULT_ACKS=1 LMQ_FAULT_ROUNDS="$ROUNDS" run
