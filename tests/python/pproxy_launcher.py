"""Start, wait for and stop a pproxy process: the one Python launcher (standard library only).

Used by the wire tests' fixtures (conftest.py, test_tls.py) and by the investigation scripts under
docs/investigations/. The shell scripts have scripts/lib.sh, the Rust tests tests/common/mod.rs.

    port, admin = free_ports(2)
    p = Pproxy(tmp_dir, embedded_yaml(port, admin, tmp_dir), admin)
    if not p.wait_ready():
        print(p.log_tail())
    ...
    p.stop()

The binary is $PPROXY_BIN, default <repo>/target/debug/pproxy.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
TERM_GRACE_S = 15.0


def proxy_bin():
    return Path(os.environ.get("PPROXY_BIN", str(REPO_ROOT / "target" / "debug" / "pproxy")))


def free_ports(n):
    """n distinct TCP ports that are free on 127.0.0.1 (the kernel's picks)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def embedded_yaml(port, admin_port, directory, delay_topics=(), server="", extra=""):
    """carrera.yaml for an embedded-Kafka pproxy on 127.0.0.1 with its data and logs in
    directory; `server` adds lines to the server: block, `extra` top-level lines."""
    d = Path(directory)
    # JSON strings are valid YAML double-quoted scalars.
    text = (
        "port: %d\nadminPort: %d\ndataDir: %s\nembeddedKafka: true\n"
        "logging:\n  dir: %s\n"
        "server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n"
        % (port, admin_port, json.dumps(str(d / "data")), json.dumps(str(d / "logs"))))
    text += "".join("  %s\n" % line for line in server.splitlines())
    if delay_topics:
        text += "embeddedDelayTopics: [%s]\n" % ", ".join(json.dumps(t) for t in delay_topics)
    return text + extra


def http_get(port, path, timeout=2.0):
    """(status, body) of GET path on 127.0.0.1:port; (None, error text) when nothing answers."""
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, str(e).encode()


class Pproxy:
    """`pproxy run -c <directory>/carrera.yaml`, started at once with its console output in
    <directory>/<console>; `new_session` keeps a Ctrl-C of the terminal away from it."""

    def __init__(self, directory, yaml, admin_port, binary=None, console="console.log",
                 new_session=False):
        self.dir = Path(directory)
        self.admin_port = admin_port
        binary = Path(binary) if binary else proxy_bin()
        if not binary.exists():
            raise FileNotFoundError("pproxy binary not found at %s (build it, or set PPROXY_BIN)"
                                    % binary)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.conf = self.dir / "carrera.yaml"
        self.conf.write_text(yaml)
        self.console = self.dir / console
        with open(self.console, "ab") as out:
            self.proc = subprocess.Popen(
                [str(binary), "run", "-c", str(self.conf)], cwd=str(self.dir),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=new_session)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def ready(self):
        return http_get(self.admin_port, "/ready")[0] == 200

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """True once GET /ready answers 200; False if the process exits or timeout passes."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if self.ready():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return False

    def stop(self, grace=TERM_GRACE_S):
        """SIGTERM (once: a second one cuts the drain short), then SIGKILL after grace s."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_files(self):
        """The console file, then everything in the log directory."""
        files = [self.console] if self.console.exists() else []
        return files + sorted(p for p in (self.dir / "logs").rglob("*") if p.is_file())

    def log_tail(self, n=80):
        out = []
        for f in self.log_files():
            out.append("==== tail of %s ====" % f)
            try:
                out.extend(f.read_bytes().decode("utf-8", "replace").splitlines()[-n:])
            except OSError as e:
                out.append("<cannot read %s: %s>" % (f, e))
        return "\n".join(out) if out else "<no proxy log files>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
