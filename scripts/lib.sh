# shellcheck shell=bash
# Helpers shared by the scripts of scripts/ and compat-tests/; source it, do not run it:
#
#   LIB_NAME=scripts/cluster.sh   # optional: the prefix of die/log messages
#   source "$ROOT/scripts/lib.sh"
#
# LIB_NAME defaults to the sourcing script's file name. Nothing here changes the caller's
# shell options or traps.

LIB_NAME="${LIB_NAME:-$(basename "$0")}"

die() { printf '%s: error: %s\n' "$LIB_NAME" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$LIB_NAME" "$*" >&2; }
# A progress line of a long run (the test suites' steps and scenarios).
say() { printf '==> %s\n' "$*" >&2; }

need() { # COMMAND HINT: dies with HINT when COMMAND is not on the PATH
  command -v "$1" >/dev/null 2>&1 || die "'$1' is missing: $2"
}

apt_install() { # PACKAGE...: apt-get install, running apt-get update only when that fails
  local out="${TMPDIR:-/tmp}/lmq-apt.$$.log"
  [[ $(id -u) -eq 0 ]] || die "missing $*: run as root or: sudo apt-get install -y $*"
  say "apt-get install $*"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$out" 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$out" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$out" 2>&1; }; then
    rm -f "$out"
  else
    die "could not install $* (apt-get's output: $out); install them with apt-get and retry"
  fi
}

free_port() { # a TCP port of 127.0.0.1 that nothing listens on right now
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() { # PORT [HOST]: something accepts connections there (default host 127.0.0.1)
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

alive() { # PID: the process runs (a zombie, dead but not yet reaped, does not count)
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

wait_for_port() { # PORT SECONDS [PID]: 0 once PORT accepts; 1 after SECONDS, or once PID died
  local port="$1" tenths=$(($2 * 10)) pid="${3:-}"
  while ((tenths-- > 0)); do
    port_open "$port" && return 0
    [[ -z "$pid" ]] || alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() { # PID SECONDS: SIGTERM, up to SECONDS for it to exit, then SIGKILL; 1 when killed
  local pid="$1" tenths=$(($2 * 10))
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while ((tenths-- > 0)) && alive "$pid"; do sleep 0.1; done
  alive "$pid" || return 0
  kill -KILL "$pid" 2>/dev/null || true
  return 1
}

# A test suite's check: `PASS NAME`, or with a reason `FAIL NAME: REASON`, on stdout, counted
# in PASSED / FAILED.
PASSED=0
FAILED=0
result() { # NAME [FAILURE-TEXT]
  if [[ -z "${2:-}" ]]; then
    echo "PASS $1"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
  fi
}

print_header() { # the running script's leading comment block, without the comment marks
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

# shellcheck disable=SC2034 # DIR, COMMAND and ARGS are for the caller
command_and_dir() { # ARG...: DIR from `--dir D` anywhere (unchanged without one), COMMAND the
  # first other argument, ARGS the rest in order; 1 when there is no COMMAND
  ARGS=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
    esac
  done
  [[ ${#ARGS[@]} -gt 0 ]] || return 1
  COMMAND="${ARGS[0]}"
  ARGS=("${ARGS[@]:1}")
}

wait_for_line() { # FILE PATTERN SECONDS [PID]: prints FILE's first line matching PATTERN
  # (grep -E) once it is there; 1 after SECONDS, or once PID died
  local file="$1" pattern="$2" tenths=$(($3 * 10)) pid="${4:-}" line
  while ((tenths-- > 0)); do
    if line="$(grep -m1 -E -- "$pattern" "$file" 2>/dev/null)"; then
      echo "$line"
      return 0
    fi
    [[ -z "$pid" ]] || alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

lmq_ready_address() { # READY_LINE listen|admin: the address the `lmq ready` line names for it
  case "$2" in
  listen) sed -n 's/.* listen=\([0-9.]*:[0-9]*\).*/\1/p' <<<"$1" ;;
  admin) sed -n 's/.* admin=Some(\([0-9.]*:[0-9]*\)).*/\1/p' <<<"$1" ;;
  *) die "lmq_ready_address: no listener $2" ;;
  esac
}

wait_for() { # SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; 1 after SECONDS
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
