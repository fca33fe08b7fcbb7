#!/usr/bin/env bash
# Packs pproxy with build.sh, unpacks the tarball elsewhere and drives it with its control.sh:
# start (waits for /health), status, a real send, reload (restart), stop (drain), status again.
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=${1:---debug}
./build.sh "$profile_flag" >/dev/null
dest=$(mktemp -d)
trap 'PPROXY_STOP_TIMEOUT=20 "$dest/control.sh" stop --force >/dev/null 2>&1 || true; rm -rf "$dest"' EXIT
tar -xzf output/pproxy-*.tar.gz -C "$dest"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dest/conf/test.yaml" <<YAML
port: $port
adminPort: $admin
embeddedKafka: true
server:
  bindAddr: 127.0.0.1
  adminBindAddr: 127.0.0.1
YAML
export PPROXY_CONF=conf/test.yaml PPROXY_ADMIN=http://127.0.0.1:$admin
fail() { echo "package test: $*" >&2; exit 1; }
cd /  # control.sh must work from any directory
"$dest/control.sh" start | grep -q 'started' || fail "start"
"$dest/control.sh" status | grep -q 'running (pid .*), ready' || fail "status"
"$dest/control.sh" start | grep -q 'already running' || fail "second start"
out=$("$dest/bin/pproxy" send --addr "127.0.0.1:$port" --topic pkg --body hello) || fail "send: $out"
[ "$out" = "0 OK" ] || fail "send answered $out"
"$dest/control.sh" reload | grep -q 'started' || fail "reload"
"$dest/control.sh" stop | grep -q 'stopped' || fail "stop"
set +e
"$dest/control.sh" status >/dev/null; rc=$?
set -e
[ "$rc" = 3 ] || fail "status after stop exited $rc, want 3"
[ -s "$dest/logs/pproxy.log" ] || fail "no logs/pproxy.log"
grep -q 'shutdown complete' "$dest/logs/pproxy.log" || fail "no clean shutdown in the log"
echo "package test: 1 passed, 0 failed"
