"""Session fixture: one pproxy process in embedded mode for the Python wire tests.

The binary is $PPROXY_BIN, default <repo>/target/debug/pproxy. It is started as
`pproxy run -c <tmp>/carrera.yaml` with free ports, an embedded Kafka mock
cluster and one embedded delay topic (DELAY_TOPIC).
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
GEN_DIR = HERE / "gen"
if str(GEN_DIR) not in sys.path:
    sys.path.insert(0, str(GEN_DIR))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

DELAY_TOPIC = "py_delay"
READY_TIMEOUT_S = 60.0
TERM_GRACE_S = 15.0
LOG_TAIL_LINES = 80

# Files whose tail is printed when something fails (filled by the fixture).
_log_files = []


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy_bin():
    return Path(os.environ.get("PPROXY_BIN", str(REPO_ROOT / "target" / "debug" / "pproxy")))


def _tail(path, n=LOG_TAIL_LINES):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return ["<cannot read %s: %s>" % (path, e)]
    return lines[-n:]


def _all_logs():
    files = []
    for p in _log_files:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.exists():
            files.append(p)
    return files


def log_tail_text():
    out = []
    for f in _all_logs():
        out.append("==== tail of %s ====" % f)
        out.extend(_tail(f))
    return "\n".join(out) if out else "<no proxy log files>"


def all_log_text():
    """Everything the proxy logged so far (console + log dir), ANSI colours stripped."""
    text = []
    for f in _all_logs():
        try:
            text.append(Path(f).read_bytes().decode("utf-8", "replace"))
        except OSError:
            pass
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(text))


def _ready(admin_port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % admin_port, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def write_config(tmp, port, admin_port, extra=""):
    """Writes <tmp>/carrera.yaml for embedded mode; `extra` is appended YAML (top-level keys)."""
    # JSON strings are valid YAML double-quoted scalars.
    conf = tmp / "carrera.yaml"
    conf.write_text(
        "port: %d\n"
        "adminPort: %d\n"
        "dataDir: %s\n"
        "embeddedKafka: true\n"
        "embeddedDelayTopics: [%s]\n"
        "logging:\n"
        "  dir: %s\n"
        % (port, admin_port, json.dumps(str(tmp / "data")), json.dumps(DELAY_TOPIC),
           json.dumps(str(tmp / "logs")))
        + extra
    )
    return conf


@contextlib.contextmanager
def run_proxy(tmp, extra=""):
    """Starts `pproxy run` in embedded mode under `tmp` (free ports, DELAY_TOPIC, `extra` YAML
    appended to carrera.yaml), waits for /ready and yields its ports, process and directory;
    stops it on exit."""
    binary = _proxy_bin()
    if not binary.exists():
        pytest.fail("pproxy binary not found at %s (build it, or set PPROXY_BIN)" % binary)
    port, admin_port = _free_port(), _free_port()
    while admin_port == port:
        admin_port = _free_port()
    (tmp / "data").mkdir()
    (tmp / "logs").mkdir()
    conf = write_config(tmp, port, admin_port, extra)
    console = tmp / "console.log"
    _log_files.extend([console, tmp / "logs"])

    with open(console, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "run", "-c", str(conf)],
            cwd=str(tmp), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail("pproxy exited with status %s before /ready answered 200\n%s"
                            % (proc.returncode, log_tail_text()))
            if _ready(admin_port):
                break
            if time.monotonic() > deadline:
                pytest.fail("pproxy /ready did not answer 200 within %.0f s\n%s"
                            % (READY_TIMEOUT_S, log_tail_text()))
            time.sleep(0.2)
        yield {"host": "127.0.0.1", "port": port, "admin_port": admin_port, "proc": proc,
               "dir": tmp, "conf": conf}
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def proxy_proc(tmp_path_factory):
    with run_proxy(tmp_path_factory.mktemp("pproxy")) as p:
        yield p


@pytest.fixture(scope="session")
def proxy(proxy_proc):
    """(host, port) of the running proxy's Thrift port."""
    return proxy_proc["host"], proxy_proc["port"]


@pytest.fixture(autouse=True)
def _proxy_still_running(request):
    """After each test that used the proxy, check the process did not die."""
    yield
    if "proxy_proc" in request.fixturenames:
        proc = request.getfixturevalue("proxy_proc")["proc"]
        if proc.poll() is not None:
            pytest.fail("pproxy exited (status %s) during this test" % proc.returncode)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _log_files:
        return
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.section("pproxy log tail")
        terminalreporter.write_line(log_tail_text())
