#!/usr/bin/env bash
# control.sh start|stop|restart|reload|status — process control as operations.md §2 describes.
# Runs from any directory; works in the repository (target/release or target/debug binary) and
# in a packaged tree (bin/pproxy).
set -uo pipefail
cd "$(dirname "$0")" || exit 1

PPROXY_CONF=${PPROXY_CONF:-conf/carrera.yaml}
PPROXY_PID_FILE=${PPROXY_PID_FILE:-run/pproxy.pid}
PPROXY_LOG_DIR=${PPROXY_LOG_DIR:-logs}
PPROXY_ADMIN=${PPROXY_ADMIN:-http://127.0.0.1:9614}
PPROXY_START_TIMEOUT=${PPROXY_START_TIMEOUT:-30}
PPROXY_STOP_TIMEOUT=${PPROXY_STOP_TIMEOUT:-60}

if [ -z "${PPROXY_BIN:-}" ]; then
  for b in bin/pproxy target/release/pproxy target/debug/pproxy; do
    [ -x "$b" ] && { PPROXY_BIN=$b; break; }
  done
fi
PPROXY_BIN=${PPROXY_BIN:-bin/pproxy}

pid_alive() {
  local pid
  [ -f "$PPROXY_PID_FILE" ] || return 1
  pid=$(cat "$PPROXY_PID_FILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q pproxy "/proc/$pid/cmdline" 2>/dev/null
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PPROXY_ADMIN$1" 2>/dev/null; }

start() {
  if pid_alive; then
    echo "already running (pid $(cat "$PPROXY_PID_FILE"))"
    return 0
  fi
  rm -f "$PPROXY_PID_FILE"
  [ -x "$PPROXY_BIN" ] || { echo "no pproxy binary (build with: cargo build --release)"; return 1; }
  if ! "$PPROXY_BIN" check-config -c "$PPROXY_CONF" >/dev/null; then
    "$PPROXY_BIN" check-config -c "$PPROXY_CONF"
    return 2
  fi
  mkdir -p "$PPROXY_LOG_DIR/old" "$(dirname "$PPROXY_PID_FILE")"
  local console=$PPROXY_LOG_DIR/console.log
  [ -f "$console" ] && mv "$console" "$PPROXY_LOG_DIR/old/console.log.$(date +%Y%m%d-%H%M%S)"
  nohup "$PPROXY_BIN" run -c "$PPROXY_CONF" --pid-file "$PPROXY_PID_FILE" \
    --log-dir "$PPROXY_LOG_DIR" >>"$console" 2>&1 &
  local child=$! waited=0
  while [ "$waited" -lt "$((PPROXY_START_TIMEOUT * 10))" ]; do
    if ! kill -0 "$child" 2>/dev/null; then
      echo "pproxy exited during start-up:"; tail -n 20 "$console"; return 1
    fi
    if [ "$(http_status /health)" = 200 ]; then
      if [ "$(http_status /ready)" = 200 ]; then
        echo "started (pid $child), ready"
      else
        echo "started (pid $child), not ready yet"
      fi
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "pproxy did not become healthy in ${PPROXY_START_TIMEOUT}s:"; tail -n 20 "$console"
  return 1
}

stop() {
  local force=${1:-}
  if ! pid_alive; then
    rm -f "$PPROXY_PID_FILE"
    echo "not running"
    return 0
  fi
  local pid waited=0
  pid=$(cat "$PPROXY_PID_FILE")
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$PPROXY_STOP_TIMEOUT" ]; then
      if [ "$force" = "--force" ]; then
        kill -KILL "$pid"; sleep 0.5; rm -f "$PPROXY_PID_FILE"; echo "killed (pid $pid)"; return 0
      fi
      echo "still running after ${PPROXY_STOP_TIMEOUT}s (pid $pid)"; return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$PPROXY_PID_FILE"
  echo "stopped (pid $pid)"
}

status() {
  if pid_alive; then
    local pid body
    pid=$(cat "$PPROXY_PID_FILE")
    if [ "$(http_status /ready)" = 200 ]; then
      echo "running (pid $pid), ready"
    else
      body=$(curl -s --max-time 2 "$PPROXY_ADMIN/ready" 2>/dev/null)
      echo "running (pid $pid), not ready: ${body:-admin endpoint unreachable}"
    fi
    return 0
  fi
  if [ -f "$PPROXY_PID_FILE" ]; then
    echo "not running (stale pid file)"
    return 1
  fi
  echo "not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  restart | reload) stop || exit 1; start ;;
  status) status ;;
  *) echo "usage: $0 start|stop [--force]|restart|reload|status"; exit 2 ;;
esac
