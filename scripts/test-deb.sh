#!/usr/bin/env bash
# The Debian package, tested as an operator would use it (docs/PACKAGING.md):
#   scripts/test-deb.sh [--debug|--release]     (default --debug: packs the dev build)
# builds the .deb and its -dbgsym with `./build.sh --deb`, installs both with dpkg -i, checks
# the files, the user, the conffile and the unit (`systemd-analyze verify`), starts the installed
# binary as the package's user with the package's config (under systemd where it is PID 1;
# otherwise directly with the unit's user, working directory, environment, limits and command
# line, and a notify socket of our own for Type=notify), sends a message and a delay add that
# must fire, reloads with ExecReload, stops with the unit's KillSignal within TimeoutStopSec, then
# removes and purges the package and checks what each leaves behind.
# Needs root and free ports 9613/9614; it refuses to touch a machine where pproxy is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME="deb package test"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
profile_flag=${1:---debug}

if [ "$(id -u)" != 0 ]; then
  echo "deb package test: skipped, needs root (dpkg -i)"
  exit 0
fi

passed=0
pass() { passed=$((passed + 1)); echo "deb package test: ok: $*"; }
fail() {
  echo "deb package test: FAILED: $*" >&2
  [ -f /var/log/pproxy/pproxy.log ] && tail -n 30 /var/log/pproxy/pproxy.log >&2
  [ -n "${work:-}" ] && [ -f "$work/console.log" ] && tail -n 30 "$work/console.log" >&2
  exit 1
}
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

if installed pproxy || [ -e /var/lib/pproxy ] || [ -e /etc/pproxy ]; then
  echo "deb package test: pproxy is installed or has left /var/lib/pproxy or /etc/pproxy here;" >&2
  echo "deb package test: this test installs and purges its own, so remove those first" >&2
  exit 1
fi
for p in 9613 9614; do
  ! port_busy "127.0.0.1:$p" || die "port $p is in use (the packaged config uses it)"
done

work=$(mktemp -d)
chmod 0755 "$work"
pid=""
notify_pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  [ -n "$notify_pid" ] && kill "$notify_pid" 2>/dev/null || true
  if installed pproxy || dpkg-query -W pproxy >/dev/null 2>&1; then
    dpkg --purge pproxy pproxy-dbgsym >/dev/null 2>&1 || true
  fi
  # What purge keeps on purpose (the data directory, the user) goes too: the next run must meet a
  # machine without them.
  rm -rf /var/lib/pproxy /var/log/pproxy /etc/pproxy
  getent passwd pproxy >/dev/null && deluser --quiet --system pproxy >/dev/null 2>&1 || true
  getent group pproxy >/dev/null && delgroup --quiet --system pproxy >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# DEB_NO_BUILD=1 reuses the packages already in output/ (for iterating on this script).
if [ "${DEB_NO_BUILD:-}" != 1 ]; then
  ./build.sh "$profile_flag" --deb >"$work/build.log" || { cat "$work/build.log" >&2; fail "build.sh $profile_flag --deb"; }
  grep '^build:' "$work/build.log"
fi
deb=$(ls output/pproxy_*.deb)
ddeb=$(ls output/pproxy-dbgsym_*.ddeb)

# --- install ---------------------------------------------------------------------------------
dpkg -i "$deb" "$ddeb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log" >&2; fail "dpkg -i"; }
installed pproxy || fail "pproxy not installed after dpkg -i"
pass "dpkg -i $(basename "$deb") $(basename "$ddeb")"

[ -x /usr/bin/pproxy ] || fail "no /usr/bin/pproxy"
/usr/bin/pproxy --version >/dev/null || fail "/usr/bin/pproxy --version"
readelf -S /usr/bin/pproxy | grep -q '\.debug_info' && fail "/usr/bin/pproxy carries debug info"
# The dbgsym package's file is found by build id: gdb names the source line of a function.
if command -v gdb >/dev/null; then
  gdb -batch -ex 'info line pproxy::notify::ready' /usr/bin/pproxy 2>&1 | grep -q 'src/notify.rs' ||
    fail "gdb did not symbolize /usr/bin/pproxy with the dbgsym package"
fi
pass "stripped /usr/bin/pproxy, symbolized through the dbgsym package"

entry=$(getent passwd pproxy) || fail "no pproxy user"
IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/pproxy ] && [ "$shell" = /usr/sbin/nologin ] ||
  fail "pproxy user is not a system user with home /var/lib/pproxy and no shell: $entry"
for d in /var/lib/pproxy /var/log/pproxy; do
  [ "$(stat -c '%U:%G %a' "$d")" = "pproxy:pproxy 750" ] || fail "$d: $(stat -c '%U:%G %a' "$d")"
done
dpkg-query -W -f='${Conffiles}\n' pproxy | grep -q '^ /etc/pproxy/carrera.yaml ' ||
  fail "/etc/pproxy/carrera.yaml is not a conffile"
[ "$(stat -c '%U:%G %a' /etc/pproxy/carrera.yaml)" = "root:pproxy 640" ] ||
  fail "carrera.yaml: $(stat -c '%U:%G %a' /etc/pproxy/carrera.yaml)"
/usr/bin/pproxy check-config -c /etc/pproxy/carrera.yaml >/dev/null || fail "check-config of the packaged config"
pass "system user, data and log directories, conffile (root:pproxy 640, valid)"

unit=$(dpkg -L pproxy | grep '/systemd/system/pproxy.service$') || fail "no unit in the package"
systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; fail "systemd-analyze verify $unit"; }
[ -L /etc/systemd/system/multi-user.target.wants/pproxy.service ] || fail "unit not enabled by postinst"
pass "systemd-analyze verify $unit; enabled"

# --- run as the unit would -------------------------------------------------------------------
# The unit's value of KEY (last one wins, as in systemd).
key() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(key ExecStart)
user=$(key User)
group=$(key Group)
wd=$(key WorkingDirectory)
env_line=$(key Environment)
nofile=$(key LimitNOFILE)
umask_v=$(key UMask)
reload_cmd=$(key ExecReload)
kill_sig=$(key KillSignal)
stop_timeout=$(key TimeoutStopSec)
[ "$(key Type)" = notify ] || fail "unit Type is not notify"

notify_sock=$work/notify
python3 - "$notify_sock" "$work/notify.log" <<'PY' &
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
s.settimeout(300)
with open(log, "a") as f:
    while True:
        msg = s.recv(4096).decode()
        f.write(msg.replace("\n", " ") + "\n")
        f.flush()
        if "STOPPING=1" in msg:
            break
PY
notify_pid=$!
for _ in $(seq 50); do [ -S "$notify_sock" ] && break; sleep 0.1; done

if [ -d /run/systemd/system ]; then
  # systemd is PID 1: the real thing, with the unit's own notify socket.
  systemctl daemon-reload
  systemctl start pproxy || fail "systemctl start pproxy"
  pid=$(systemctl show -p MainPID --value pproxy)
  echo "READY=1 (systemctl start returned)" >>"$work/notify.log"
  how="systemd"
else
  # A sandbox may cap the hard limit below the unit's (systemd, as root, would raise it).
  if ! (ulimit -n "$nofile") 2>/dev/null; then
    echo "deb package test: LimitNOFILE=$nofile is over this machine's hard limit; using $(ulimit -Hn)"
    nofile=$(ulimit -Hn)
  fi
  (
    cd "$wd"
    ulimit -n "$nofile"
    umask "$umask_v"
    # shellcheck disable=SC2086 # the unit's command line and environment are word lists
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $env_line NOTIFY_SOCKET="$notify_sock" \
      setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs $exec_start
  ) >"$work/console.log" 2>&1 &
  pid=$!
  how="directly ($exec_start as $user)"
fi
ready=0
for _ in $(seq 600); do
  grep -q 'READY=1' "$work/notify.log" 2>/dev/null && { ready=1; break; }
  kill -0 "$pid" 2>/dev/null || fail "pproxy exited during start-up"
  sleep 0.1
done
[ "$ready" = 1 ] || fail "no READY=1 within 60 s"
[ "$(http_code http://127.0.0.1:9614/ready)" = 200 ] || fail "/ready is not 200 after READY=1"
[ "$(stat -c %U "/proc/$pid")" = pproxy ] || fail "pproxy runs as $(stat -c %U "/proc/$pid")"
[ "$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits")" = "$nofile" ] || fail "open files limit is not $nofile"
pass "started $how; READY=1, /ready 200, running as pproxy with $nofile descriptors"

out=$(/usr/bin/pproxy send --topic pkg --key k1 --body hello) || fail "send: $out"
[ "$out" = "0 OK" ] || fail "send answered $out"
pass "sendSync through the installed proxy: $out"

out=$(/usr/bin/pproxy delay add --topic reminders --in 2s --body later) || fail "delay add: $out"
case "$out" in "0 OK "*) ;; *) fail "delay add answered $out" ;; esac
id=${out#0 OK }
fired=0
for _ in $(seq 150); do
  status=$(/usr/bin/pproxy delay status "$id" 2>&1 || true)
  case "$status" in *'"fired"'*) fired=1; break ;; esac
  sleep 0.2
done
[ "$fired" = 1 ] || fail "delay $id did not fire within 30 s: $status"
owner=$(stat -c %U /var/lib/pproxy/delay)
[ "$owner" = pproxy ] || fail "/var/lib/pproxy/delay is owned by $owner"
pass "delay add $id fired; its store is /var/lib/pproxy/delay, owned by pproxy"

reload=${reload_cmd//\$MAINPID/$pid}
$reload || fail "ExecReload ($reload)"
reloaded() { grep 'configuration applied' /var/log/pproxy/config.log 2>/dev/null | grep -q 'source="sighup"'; }
for _ in $(seq 50); do reloaded && break; sleep 0.1; done
reloaded || fail "no SIGHUP reload in /var/log/pproxy/config.log after $reload"
kill -0 "$pid" 2>/dev/null || fail "pproxy died on reload"
pass "ExecReload ($reload_cmd) re-read the configuration, same process"

started=$(date +%s)
if [ "$how" = systemd ]; then
  systemctl stop pproxy
  rc=$(systemctl show -p ExecMainStatus --value pproxy)
else
  kill "-${kill_sig#SIG}" "$pid"
  wait_gone "${stop_timeout%s}" "$pid" || fail "still running ${stop_timeout}s (TimeoutStopSec) after $kill_sig"
  rc=0
  wait "$pid" || rc=$?
fi
pid=""
took=$(($(date +%s) - started))
[ "$rc" = 0 ] || fail "exit status $rc after $kill_sig"
grep -q 'shutdown complete' /var/log/pproxy/pproxy.log || fail "no clean shutdown in /var/log/pproxy/pproxy.log"
wait "$notify_pid" 2>/dev/null || true
notify_pid=""
grep -q 'STOPPING=1' "$work/notify.log" || fail "no STOPPING=1"
pass "$kill_sig: STOPPING=1, drained and exited 0 in ${took}s (TimeoutStopSec=$stop_timeout)"

# --- remove, purge ---------------------------------------------------------------------------
echo "# a local change" >>/etc/pproxy/carrera.yaml
dpkg -r pproxy-dbgsym pproxy >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log" >&2; fail "dpkg -r"; }
[ ! -e /usr/bin/pproxy ] || fail "/usr/bin/pproxy left after dpkg -r"
grep -q '# a local change' /etc/pproxy/carrera.yaml || fail "dpkg -r did not keep the changed conffile"
[ -d /var/lib/pproxy/delay ] && [ -f /var/log/pproxy/pproxy.log ] || fail "dpkg -r did not keep data and logs"
pass "dpkg -r: binary gone; changed conffile, data and logs kept"

dpkg --purge pproxy-dbgsym pproxy >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge"; }
dpkg-query -W pproxy >/dev/null 2>&1 && fail "dpkg still knows pproxy after --purge"
[ ! -e /etc/pproxy ] || fail "/etc/pproxy left after purge"
[ ! -e /var/log/pproxy ] || fail "/var/log/pproxy left after purge (Debian policy 10.8)"
[ -d /var/lib/pproxy/delay ] || fail "purge deleted the delay store"
grep -q 'kept /var/lib/pproxy' "$work/dpkg-purge.log" || fail "purge did not say it kept /var/lib/pproxy"
[ ! -e /etc/systemd/system/multi-user.target.wants/pproxy.service ] || fail "unit still enabled after purge"
getent passwd pproxy >/dev/null || fail "purge deleted the pproxy user (files it owns remain)"
pass "dpkg --purge: config, logs and unit links gone; delay store and user kept, as documented"

echo "deb package test: $passed passed, 0 failed"
