#!/usr/bin/env bash
# Real clients on LMQ's secured listeners (issue 21): kcat (Debian's librdkafka) over SSL with
# a client certificate (ssl.client.auth required), over SASL_SSL with SCRAM-SHA-512 (a user
# set with `lmq users`) and with PLAIN (the users file), and over SASL_PLAINTEXT with
# SCRAM-SHA-256; each produces and consumes. Refused as each client expects: a wrong
# password, a client certificate from another CA, a broker certificate the client does not
# trust. Certificates are made here with openssl. Then `lmq --command-config` (the native
# client) over SASL_SSL.
#
#   compat-tests/secure-clients.sh BINARY
#
# Prints 'PASS name' / 'FAIL name: reason' per check and 'secure-clients: N passed, M failed'.
set -euo pipefail
[[ $# -ge 1 && -x "$1" ]] || { echo "usage: $0 BINARY   (e.g. target/debug/lmq)" >&2; exit 2; }
LMQ="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LIB_NAME=compat-tests/secure-clients.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
need kcat "run compat-tests/prereqs.sh (Debian package kcat)"
need openssl "apt-get install openssl"

WORK="$(mktemp -d /tmp/compat-secure-XXXXXX)"
PASSED=0
FAILED=0
PID=""
pass() { echo "PASS secure $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL secure $1: $2"; FAILED=$((FAILED + 1)); }
cleanup() {
  local rc=$?
  if [[ -n "$PID" ]]; then stop_pid "$PID" 20 || true; fi
  if ((FAILED == 0 && rc == 0)); then rm -rf "$WORK"; else echo "secure-clients: work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT

# A CA, the broker's certificate (SAN 127.0.0.1), a client certificate, and a stranger CA
# with its own client certificate. X.509 v3 with the usual extensions (rustls refuses v1).
cd "$WORK"
pki() { # NAME SUBJECT CA EXTENSIONS
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
for ca in ca stranger-ca; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca.key" -out "$ca.pem" -days 2 \
    -subj "/CN=$ca" 2>/dev/null
done
pki broker "/CN=broker" ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
pki alice "/O=LMQ/CN=alice" ca "extendedKeyUsage=clientAuth"
pki mallory "/CN=mallory" stranger-ca "extendedKeyUsage=clientAuth"
printf '[users]\nbob = "bob-secret"\n' >plain-users.toml

port() { free_port; }
PLAIN_PORT=$(port)
SSL_PORT=$(port)
SASL_SSL_PORT=$(port)
SASL_PORT=$(port)
cat >lmq.toml <<EOF
listeners = ["PLAINTEXT://127.0.0.1:$PLAIN_PORT", "SSL://127.0.0.1:$SSL_PORT", "SASL_SSL://127.0.0.1:$SASL_SSL_PORT", "SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"]
[tls]
cert_file = "$WORK/broker.pem"
key_file = "$WORK/broker.key"
ca_file = "$WORK/ca.pem"
client_auth = "requested"
[sasl]
enabled_mechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
plain_users_file = "$WORK/plain-users.toml"
EOF
"$LMQ" serve --data-dir "$WORK/data" --config "$WORK/lmq.toml" --admin-listen off >"$WORK/lmq.log" 2>&1 &
PID=$!
wait_for_line "$WORK/lmq.log" 'lmq ready' 30 "$PID" >/dev/null || die "lmq did not start: $WORK/lmq.log"
"$LMQ" users set-scram alice --password alice-secret -b "127.0.0.1:$PLAIN_PORT" >/dev/null
"$LMQ" users set-scram alice --mechanism SCRAM-SHA-256 --password alice-secret \
  -b "127.0.0.1:$PLAIN_PORT" >/dev/null

# roundtrip NAME PORT KCAT-ARGS...: produce one record and read it back.
roundtrip() {
  local name="$1" port="$2" topic="secure-$1"
  shift 2
  local value="hello-$name-$RANDOM"
  if ! echo "$value" | timeout 30 kcat -P -b "127.0.0.1:$port" -t "$topic" "$@" 2>"$WORK/$name.produce.log"; then
    fail "$name" "produce: $(tail -1 "$WORK/$name.produce.log")"
    return
  fi
  local read
  read=$(timeout 30 kcat -C -b "127.0.0.1:$port" -t "$topic" -o beginning -e -q "$@" 2>"$WORK/$name.consume.log" || true)
  if [[ "$read" == "$value" ]]; then pass "$name"; else fail "$name" "read '$read', expected '$value'"; fi
}
# refused NAME PORT KCAT-ARGS...: metadata must fail.
refused() {
  local name="$1" port="$2"
  shift 2
  if timeout 20 kcat -L -b "127.0.0.1:$port" -m 5 "$@" >"$WORK/$name.log" 2>&1; then
    fail "$name" "was served"
  else
    pass "$name"
  fi
}

MTLS=(-X security.protocol=SSL -X "ssl.ca.location=$WORK/ca.pem" -X "ssl.certificate.location=$WORK/alice.pem" -X "ssl.key.location=$WORK/alice.key")
roundtrip ssl-client-certificate "$SSL_PORT" "${MTLS[@]}"
roundtrip ssl-without-client-certificate "$SSL_PORT" -X security.protocol=SSL -X "ssl.ca.location=$WORK/ca.pem"
refused ssl-stranger-client-certificate "$SSL_PORT" -X security.protocol=SSL -X "ssl.ca.location=$WORK/ca.pem" \
  -X "ssl.certificate.location=$WORK/mallory.pem" -X "ssl.key.location=$WORK/mallory.key"
refused ssl-untrusted-broker "$SSL_PORT" -X security.protocol=SSL -X "ssl.ca.location=$WORK/stranger-ca.pem"

SCRAM512=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem" -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=alice)
roundtrip sasl-ssl-scram-sha-512 "$SASL_SSL_PORT" "${SCRAM512[@]}" -X sasl.password=alice-secret
refused sasl-ssl-scram-wrong-password "$SASL_SSL_PORT" "${SCRAM512[@]}" -X sasl.password=guess
roundtrip sasl-ssl-plain "$SASL_SSL_PORT" -X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem" \
  -X sasl.mechanisms=PLAIN -X sasl.username=bob -X sasl.password=bob-secret
refused sasl-ssl-plain-wrong-password "$SASL_SSL_PORT" -X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem" \
  -X sasl.mechanisms=PLAIN -X sasl.username=bob -X sasl.password=nope
roundtrip sasl-plaintext-scram-sha-256 "$SASL_PORT" -X security.protocol=SASL_PLAINTEXT \
  -X sasl.mechanisms=SCRAM-SHA-256 -X sasl.username=alice -X sasl.password=alice-secret
refused sasl-listener-without-authentication "$SASL_PORT"

# The native client and the CLI, with Kafka's client properties.
cat >client.properties <<EOF
security.protocol=SASL_SSL
ssl.ca.location=$WORK/ca.pem
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";
EOF
if "$LMQ" topics list -b "127.0.0.1:$SASL_SSL_PORT" --command-config client.properties 2>"$WORK/cli.log" | grep -q secure-sasl-ssl-scram-sha-512; then
  pass lmq-cli-command-config
else
  fail lmq-cli-command-config "$(tail -1 "$WORK/cli.log")"
fi

echo "secure-clients: $PASSED passed, $FAILED failed"
((FAILED == 0))
