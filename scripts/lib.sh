# shellcheck shell=bash
# scripts/lib.sh: the functions the scripts in scripts/ share. Sourced, never run:
#
#   LOG_NAME=bench                        # prefix of log lines (default: the script's name)
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Messages
#   log MSG...                 "LOG_NAME: MSG" on stderr
#   die MSG...                 log "error: MSG" and exit 1
# Ports and processes
#   free_port                  a free TCP port on 127.0.0.1 (the kernel's pick)
#   port_busy HOST:PORT        something accepts connections there
#   alive PID                  the process exists and is not a zombie (where init does not
#                              reap, an exited process can linger as one)
#   wait_gone SECS PID...      until every PID has exited; status 1 if one is alive after SECS
#   stop_pids GRACE PID...     SIGTERM to each, once (a second one cuts pproxy's drain short),
#                              GRACE seconds for all of them to exit, then SIGKILL to the rest;
#                              reaps those that are children of this shell
#   http_code URL              the HTTP status of GET URL ("000" when nothing answers)
# pproxy
#   pproxy_start [--detach] DIR YAML [RUN_ARGS...]
#                              `$PPROXY run -c YAML RUN_ARGS...` in the background, in DIR, its
#                              output appended to DIR/console.log; sets PPROXY_PID. --detach:
#                              in a session of its own (setsid), so it outlives this script and
#                              gets no Ctrl-C of its terminal. PPROXY is the binary (default
#                              target/debug/pproxy); a relative path is made absolute.
#   pproxy_wait_ready ADMIN_PORT TIMEOUT [PID [LOG]]
#                              poll GET http://127.0.0.1:ADMIN_PORT/ready until it answers 200;
#                              status 1 (with the reason and the end of LOG) if PID exits first
#                              or TIMEOUT seconds pass
# Test stack (scripts/stack.sh)
#   stack_healthy COMPONENT    `scripts/stack.sh status` shows its servers healthy (kafka,
#                              rocketmq, zookeeper)
#   stack_ensure COMPONENT     `scripts/stack.sh up COMPONENT` unless it is healthy already;
#                              STACK_STARTED=1 if this call started it, else 0
#
# The pproxy launchers of the other languages: tests/common/mod.rs (`Proxy`, the Rust tests) and
# tests/python/pproxy_launcher.py (the Python tests and docs/investigations/).

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=${LOG_NAME:-$(basename "$0" .sh)}

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ------------------------------------------------------------ ports and processes

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_busy() {
  local host=${1%:*} port=${1##*:}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]]
}

wait_gone() {
  local pid left end=$((${EPOCHREALTIME//[.,]/} + $1 * 1000000))
  shift
  while :; do
    left=0
    for pid in "$@"; do
      if alive "$pid"; then
        left=1
        break
      fi
    done
    ((left)) || return 0
    ((${EPOCHREALTIME//[.,]/} < end)) || return 1
    sleep 0.1
  done
}

stop_pids() {
  local grace=$1 pid
  shift
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  if ! wait_gone "$grace" "$@"; then
    for pid in "$@"; do
      if alive "$pid"; then
        log "pid $pid still running after ${grace}s, killing"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait_gone 10 "$@" || log "pid(s) $* still there 10 s after SIGKILL"
  fi
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# ------------------------------------------------------------------------ pproxy

pproxy_start() {
  local detach=() dir yaml bin=${PPROXY:-target/debug/pproxy}
  if [[ ${1:-} == --detach ]]; then
    detach=(setsid)
    shift
  fi
  dir=$1 yaml=$2
  shift 2
  [[ $bin == /* ]] || bin=$PWD/$bin
  [[ -x $bin && -f $bin ]] || die "pproxy binary $bin is not an executable file"
  # Every descriptor redirected: nothing holds this script's output open (a pipe to it ends).
  # Without job control the subshell leads no process group, so setsid execs pproxy in place
  # and $! is pproxy's pid in both cases.
  (cd "$dir" && exec "${detach[@]}" "$bin" run -c "$yaml" "$@") </dev/null >>"$dir/console.log" 2>&1 &
  # shellcheck disable=SC2034 # for the caller
  PPROXY_PID=$!
}

pproxy_wait_ready() {
  local port=$1 timeout=$2 pid=${3:-} logf=${4:-} start=$SECONDS
  while [[ $(http_code "http://127.0.0.1:$port/ready") != 200 ]]; do
    if [[ -n $pid ]] && ! alive "$pid"; then
      log "pproxy (pid $pid) exited during start-up"
      [[ -z $logf ]] || tail -n 20 "$logf" >&2 || true
      return 1
    fi
    if ((SECONDS - start >= timeout)); then
      log "pproxy not ready after ${timeout}s: $(curl -s --max-time 2 "http://127.0.0.1:$port/ready" || echo 'admin port unreachable')"
      [[ -z $logf ]] || tail -n 20 "$logf" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# --------------------------------------------------------------------- test stack

stack_healthy() {
  local status proc procs=$1
  [[ $1 != rocketmq ]] || procs="namesrv broker"
  # Not `status | grep -q`: with pipefail, grep -q leaving early makes `status` die of SIGPIPE
  # and the check fail although the server is healthy.
  status=$("$LIB_DIR/stack.sh" status)
  for proc in $procs; do
    grep -q "^$proc .* healthy\$" <<<"$status" || return 1
  done
}

stack_ensure() {
  # shellcheck disable=SC2034 # for the caller
  STACK_STARTED=0
  stack_healthy "$1" && return 0
  "$LIB_DIR/stack.sh" up "$1"
  # shellcheck disable=SC2034 # for the caller
  STACK_STARTED=1
}
