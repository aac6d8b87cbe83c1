# shellcheck shell=bash
# Prerequisites of the real-client suites, installed idempotently: kcat (apt), a JDK and
# Maven, a venv with confluent-kafka under $LMQ_CACHE/venv, Apache Kafka's jars
# (scripts/kafka.sh) and the compiled Java scenarios under $LMQ_CACHE/compat-java/<hash>.
# Sourced by compat-tests/matrix.sh and compat-tests/cluster.sh, which define HERE, LMQ_CACHE,
# KAFKA, PY, LOGS, CONFLUENT_KAFKA_VERSION and source scripts/lib.sh (say, die, apt_install);
# sets KAFKA_VERSION and JAVA_CLASSES.

command -v kcat >/dev/null || apt_install kcat
command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
command -v python3 >/dev/null || apt_install python3 python3-venv

if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('confluent-kafka') != '$CONFLUENT_KAFKA_VERSION')" 2>/dev/null; then
  say "python venv with confluent-kafka==$CONFLUENT_KAFKA_VERSION in $LMQ_CACHE/venv"
  python3 -m venv "$LMQ_CACHE/venv" >"$LOGS/venv.log" 2>&1 ||
    { apt_install python3-venv && python3 -m venv "$LMQ_CACHE/venv" >"$LOGS/venv.log" 2>&1; } ||
    die "python3 -m venv failed (see $LOGS/venv.log): apt-get install -y python3-venv"
  "$LMQ_CACHE/venv/bin/pip" install -q "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >>"$LOGS/venv.log" 2>&1 ||
    die "pip install confluent-kafka==$CONFLUENT_KAFKA_VERSION failed (see $LOGS/venv.log); PyPI must be reachable"
fi

say "Apache Kafka jars (scripts/kafka.sh install)"
"$KAFKA" install
KAFKA_VERSION="$("$KAFKA" version)"

JAVA_SOURCES=("$HERE"/java/*.java "$HERE"/groups/*.java)
JAVA_HASH="$(cat "${JAVA_SOURCES[@]}" <(echo "$KAFKA_VERSION") | sha256sum | cut -c1-16)"
JAVA_CLASSES="$LMQ_CACHE/compat-java/$JAVA_HASH"
if [[ ! -d "$JAVA_CLASSES" ]]; then
  say "compiling compat-tests/java and compat-tests/groups into $JAVA_CLASSES"
  rm -rf "$JAVA_CLASSES.tmp"
  mkdir -p "$JAVA_CLASSES.tmp"
  javac -d "$JAVA_CLASSES.tmp" -cp "$("$KAFKA" classpath)" "${JAVA_SOURCES[@]}" >"$LOGS/javac.log" 2>&1 ||
    { cat "$LOGS/javac.log" >&2; die "javac failed"; }
  mv "$JAVA_CLASSES.tmp" "$JAVA_CLASSES"
fi

