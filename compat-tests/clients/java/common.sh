# Shared by install and run: where the compiled classes of this family live.
# Sets HERE, ROOT, KAFKA and CLASSES (the cache dir keyed by the sources and Kafka's version).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
KAFKA="$ROOT/scripts/kafka.sh"
SOURCES=("$HERE"/*.java "$HERE/log4j2.properties")
HASH="$(cat "${SOURCES[@]}" <(echo "kafka $("$KAFKA" version)") | sha256sum | cut -c1-16)"
CLASSES="${LMQ_CACHE:-$HOME/.cache/lmq}/compat-java-matrix/$HASH"
