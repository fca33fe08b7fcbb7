#!/usr/bin/env bash
# Packs pproxy with build.sh, unpacks the tarball elsewhere and drives it with its control.sh:
# start (waits for /health), status, a real send, reload (restart), stop (drain), status again.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME="package test"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
profile_flag=${1:---debug}
./build.sh "$profile_flag" >/dev/null
dest=$(mktemp -d)
trap 'PPROXY_STOP_TIMEOUT=20 "$dest/control.sh" stop --force >/dev/null 2>&1 || true; rm -rf "$dest"' EXIT
tar -xzf output/pproxy-*.tar.gz -C "$dest"
port=$(free_port)
admin=$(free_port)
cat > "$dest/conf/test.yaml" <<YAML
port: $port
adminPort: $admin
embeddedKafka: true
server:
  bindAddr: 127.0.0.1
  adminBindAddr: 127.0.0.1
YAML
export PPROXY_CONF=conf/test.yaml PPROXY_ADMIN=http://127.0.0.1:$admin
cd /  # control.sh must work from any directory
"$dest/control.sh" start | grep -q 'started' || die "start"
"$dest/control.sh" status | grep -q 'running (pid .*), ready' || die "status"
"$dest/control.sh" start | grep -q 'already running' || die "second start"
out=$("$dest/bin/pproxy" send --addr "127.0.0.1:$port" --topic pkg --body hello) || die "send: $out"
[ "$out" = "0 OK" ] || die "send answered $out"
"$dest/control.sh" reload | grep -q 'started' || die "reload"
"$dest/control.sh" stop | grep -q 'stopped' || die "stop"
set +e
"$dest/control.sh" status >/dev/null; rc=$?
set -e
[ "$rc" = 3 ] || die "status after stop exited $rc, want 3"
[ -s "$dest/logs/pproxy.log" ] || die "no logs/pproxy.log"
grep -q 'shutdown complete' "$dest/logs/pproxy.log" || die "no clean shutdown in the log"
echo "package test: 1 passed, 0 failed"
