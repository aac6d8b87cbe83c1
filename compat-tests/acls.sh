#!/usr/bin/env bash
# Kafka's kafka-acls tool (org.apache.kafka.tools.AclCommand) against LMQ with the standard
# authorizer, and with --kafka the same against Apache Kafka (KRaft, StandardAuthorizer):
# --add, --list (by topic, and with pattern type MATCH), --remove. Then on both, with a
# SASL_PLAINTEXT listener (PLAIN): User:carol, without ACLs, does not see the topic in
# kafka-topics --list; with READ on her group only, her console consumer fails with a topic
# authorization error; with READ on the topic too she consumes it. On LMQ also the PLAINTEXT listener's
# User:ANONYMOUS after a restart without super users.
#
#   compat-tests/acls.sh BINARY [--kafka]
#
# Prints 'PASS name' / 'FAIL name: reason' per check and, last, 'N passed, M failed'; exits
# non-zero if anything failed.
set -euo pipefail

[[ $# -ge 1 && -x "$1" ]] || { echo "usage: $0 BINARY [--kafka]   (e.g. target/debug/lmq)" >&2; exit 2; }
BINARY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
WITH_KAFKA="${2:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB_NAME=compat-tests/acls.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
export LMQ_CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}"
KAFKA="$ROOT/scripts/kafka.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmq-compat-acls.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
LMQ_PID=""
KAFKA_DIR=""

cleanup() {
  local rc=$?
  [[ -z "$LMQ_PID" ]] || stop_pid "$LMQ_PID" 15 || true
  [[ -z "$KAFKA_DIR" ]] || "$KAFKA" broker stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  if ((FAILED > 0 || rc != 0)) || [[ -n "${LMQ_COMPAT_KEEP:-}" ]]; then
    echo "compat-tests/acls.sh: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$KAFKA" install >/dev/null

# start_lmq PORT FLAGS...: on WORK/lmq-data, waits for the port.
start_lmq() {
  local port="$1" tenths=300
  shift
  "$BINARY" serve --data-dir "$WORK/lmq-data" --listen "127.0.0.1:$port" --admin-listen off "$@" \
    >>"$LOGS/lmq.log" 2>&1 </dev/null &
  LMQ_PID=$!
  while ((tenths-- > 0)); do
    port_open "$port" && return 0
    alive "$LMQ_PID" || die "lmq exited during start-up (logs/lmq.log)"
    sleep 0.1
  done
  die "lmq does not serve on $port"
}

stop_lmq() {
  stop_pid "$LMQ_PID" 15 || true
  wait "$LMQ_PID" 2>/dev/null || true
  LMQ_PID=""
}

tool() { # CLASS ARGS...: a Kafka tool, stdout and stderr together
  "$KAFKA" tool "$@" 2>&1
}

# check NAME OK OUTPUT: PASS when OK is "yes", else FAIL with the output's start.
check() {
  if [[ "$2" == yes ]]; then
    result "$1"
  else
    result "$1" "$(echo "$3" | tr '\n' ' ' | cut -c1-300)"
  fi
}

# acl_checks BROKER BOOTSTRAP: add, list by topic and by MATCH, remove.
acl_checks() {
  local broker="$1" bootstrap="$2" out ok
  local acls=(org.apache.kafka.tools.AclCommand --bootstrap-server "$bootstrap")
  out="$(tool "${acls[@]}" --add --allow-principal User:alice --operation Read --operation Describe --topic orders)" || true
  echo "$out" >"$LOGS/$broker-add.log"
  ok=no
  [[ "$out" == *"principal=User:alice, host=*, operation=READ, permissionType=ALLOW"* ]] && ok=yes
  check "$broker acls-add" "$ok" "$out"

  tool "${acls[@]}" --add --deny-principal User:bob --operation All --topic ord \
    --resource-pattern-type prefixed >"$LOGS/$broker-add-prefixed.log" || true
  out="$(tool "${acls[@]}" --list --topic orders)" || true
  echo "$out" >"$LOGS/$broker-list.log"
  ok=no
  [[ "$out" == *"User:alice, host=*, operation=DESCRIBE"* && "$out" != *"User:bob"* ]] && ok=yes
  check "$broker acls-list-literal" "$ok" "$out"

  out="$(tool "${acls[@]}" --list --topic orders --resource-pattern-type match)" || true
  echo "$out" >"$LOGS/$broker-list-match.log"
  ok=no
  [[ "$out" == *"User:alice"* && "$out" == *"name=ord, patternType=PREFIXED"* ]] && ok=yes
  check "$broker acls-list-match" "$ok" "$out"

  tool "${acls[@]}" --remove --force --allow-principal User:alice --operation Read --topic orders \
    >"$LOGS/$broker-remove.log" || true
  out="$(tool "${acls[@]}" --list)" || true
  echo "$out" >"$LOGS/$broker-list-after.log"
  ok=no
  [[ "$out" == *"User:alice, host=*, operation=DESCRIBE"* && "$out" != *"operation=READ"* && "$out" == *"User:bob"* ]] && ok=yes
  check "$broker acls-remove" "$ok" "$out"
}

# The client settings of carol over SASL_PLAINTEXT with PLAIN, for Kafka's tools.
cat >"$WORK/carol.properties" <<'PROPS'
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="carol" password="carol-secret";
PROPS

# sasl_checks BROKER PLAIN_BOOTSTRAP SASL_BOOTSTRAP: carol (no ACL yet) does not see `orders`;
# with READ on her group only, her consumer is refused the topic; with READ on the topic too
# she consumes it. ACLs made through the PLAINTEXT listener (ANONYMOUS, a super user). Needs
# topic `orders` with a record.
sasl_checks() {
  local broker="$1" plain="$2" sasl="$3" out ok
  local as_carol=(--command-config "$WORK/carol.properties")
  local consume=(org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$sasl"
    --command-config "$WORK/carol.properties" --topic orders --group carol-app --from-beginning
    --max-messages 1 --timeout-ms 15000)
  local acls=(org.apache.kafka.tools.AclCommand --bootstrap-server "$plain")
  out="$(tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$sasl" "${as_carol[@]}" --list)" || true
  echo "$out" >"$LOGS/$broker-carol-topics.log"
  ok=no
  [[ "$out" != *orders* && "$out" != *rror* ]] && ok=yes
  check "$broker sasl-metadata-hides-undescribable-topic" "$ok" "$out"
  tool "${acls[@]}" --add --allow-principal User:carol --operation Read --group carol-app \
    >"$LOGS/$broker-carol-group-acl.log" || true
  out="$(timeout 90 "$KAFKA" tool "${consume[@]}" 2>&1)" || true
  echo "$out" >"$LOGS/$broker-carol-denied.log"
  ok=no
  [[ "$out" == *"Not authorized to access topics: [orders]"* ]] && ok=yes
  check "$broker sasl-consumer-without-read-refused" "$ok" "$out"
  tool "${acls[@]}" --add --allow-principal User:carol --consumer --topic orders --group carol-app \
    >"$LOGS/$broker-carol-acls.log" || true
  out="$(timeout 90 "$KAFKA" tool "${consume[@]}" 2>&1)" || true
  echo "$out" >"$LOGS/$broker-carol-allowed.log"
  ok=no
  [[ "$out" == *one* && "$out" == *"Processed a total of 1 messages"* ]] && ok=yes
  check "$broker sasl-consumer-with-read-consumes" "$ok" "$out"
}

say "LMQ with the standard authorizer, User:ANONYMOUS a super user, and a SASL_PLAINTEXT listener"
PORT="$(free_port)"
SASL_PORT="$(free_port)"
printf '[users]\ncarol = "carol-secret"\n' >"$WORK/lmq-users.toml"
cat >"$WORK/lmq.toml" <<TOML
listeners = ["PLAINTEXT://127.0.0.1:$PORT", "SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"]
[sasl]
enabled_mechanisms = ["PLAIN"]
plain_users_file = "$WORK/lmq-users.toml"
TOML
start_lmq "$PORT" --config "$WORK/lmq.toml" --authorizer standard --super-users User:ANONYMOUS
acl_checks lmq "127.0.0.1:$PORT"
tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" --create --topic orders \
  --partitions 1 --replication-factor 1 >"$LOGS/lmq-create.log" || true
echo one | tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$PORT" \
  --topic orders >"$LOGS/lmq-produce.log" || true
sasl_checks lmq "127.0.0.1:$PORT" "127.0.0.1:$SASL_PORT"

say "LMQ restarted without super users: ANONYMOUS has no ACL"
stop_lmq
start_lmq "$PORT" --config "$WORK/lmq.toml" --authorizer standard
out="$(tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" --list)" || true
echo "$out" >"$LOGS/lmq-topics-denied.log"
ok=no
[[ "$out" != *orders* ]] && ok=yes
check "lmq metadata-hides-undescribable-topic" "$ok" "kafka-topics --list shows it: $out"
out="$(timeout 60 "$KAFKA" tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server \
  "127.0.0.1:$PORT" --topic orders --from-beginning --max-messages 1 --timeout-ms 10000 2>&1)" || true
echo "$out" >"$LOGS/lmq-consume-denied.log"
ok=no
[[ "$out" == *"Not authorized to access topics: [orders]"* || "$out" == *TopicAuthorizationException* ]] && ok=yes
check "lmq consumer-without-read-refused" "$ok" "$out"
stop_lmq

if [[ "$WITH_KAFKA" == --kafka ]]; then
  say "Apache Kafka (KRaft) with StandardAuthorizer, User:ANONYMOUS a super user"
  KAFKA_DIR="$WORK/kafka"
  KPORT="$(free_port)"
  KSASL="$(free_port)"
  KCONTROLLER="$(free_port)"
  extra=(
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    "super.users=User:ANONYMOUS"
    "listeners=PLAINTEXT://127.0.0.1:$KPORT,CONTROLLER://127.0.0.1:$KCONTROLLER,SASL_PLAINTEXT://127.0.0.1:$KSASL"
    "advertised.listeners=PLAINTEXT://127.0.0.1:$KPORT,SASL_PLAINTEXT://127.0.0.1:$KSASL"
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    "sasl.enabled.mechanisms=PLAIN"
    "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_carol=\"carol-secret\";"
  )
  KAFKA_EXTRA_PROPERTIES="$(printf '%s\n' "${extra[@]}")" \
    "$KAFKA" broker start "$KAFKA_DIR" "$KPORT" "$KCONTROLLER" >"$LOGS/kafka-start.log" 2>&1 ||
    die "Apache Kafka does not start (logs/kafka-start.log)"
  acl_checks kafka "127.0.0.1:$KPORT"
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KPORT" --create --topic orders \
    --partitions 1 --replication-factor 1 >"$LOGS/kafka-create.log" || true
  echo one | tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$KPORT" \
    --topic orders >"$LOGS/kafka-produce.log" || true
  sasl_checks kafka "127.0.0.1:$KPORT" "127.0.0.1:$KSASL"
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
