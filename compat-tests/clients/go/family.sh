# Shared by the install and run wrappers of the Go families (franz-go, sarama), which set
# FAMILY and source this file. The families are one Go module (this directory, versions
# pinned in go.mod / go.sum), one main package each under cmd/<family>.
# The binary lives in $LMQ_CACHE/compat-<family>/<family>; its stamp holds the hash of what
# it was built from (the module's Go sources, go.mod, go.sum and the Go version).
GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LMQ_CACHE:-$HOME/.cache/lmq}/compat-$FAMILY"
BIN="$CACHE/$FAMILY"
STAMP="$CACHE/stamp"

die() {
  echo "$FAMILY: $*" >&2
  exit 1
}

source_hash() {
  (
    cd "$GO_DIR"
    find . -name '*.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum go.mod go.sum
    echo "$FAMILY $(go env GOVERSION)"
  ) | sha256sum | cut -c1-16
}

# Builds the family's binary unless the stamp says it is up to date. go.sum is complete, so
# -mod=readonly builds from the module proxy alone and never rewrites it; CGO is off so no
# C toolchain is needed.
install_family() {
  command -v go >/dev/null 2>&1 || die "go is missing from PATH (the module needs Go >= 1.26)"
  local hash tmp
  hash="$(source_hash)"
  if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$hash" ]]; then
    return 0
  fi
  echo "$FAMILY: go build ./cmd/$FAMILY into $BIN" >&2
  mkdir -p "$CACHE"
  tmp="$(mktemp "$BIN.XXXXXX")"
  if ! (cd "$GO_DIR" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -o "$tmp" "./cmd/$FAMILY") >&2; then
    rm -f "$tmp"
    die "go build ./cmd/$FAMILY failed (see above)"
  fi
  mv -f "$tmp" "$BIN"
  echo "$hash" >"$STAMP"
}

run_family() {
  [[ $# -ge 1 ]] || { echo "usage: $0 BOOTSTRAP [SCENARIO...]" >&2; exit 2; }
  [[ -x "$BIN" ]] || die "$BIN is missing: run $(dirname "$0")/install first"
  exec "$BIN" "$@"
}
