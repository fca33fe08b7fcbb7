"""Session fixture: one pproxy process in embedded mode for the Python wire tests.

The binary is $PPROXY_BIN, default <repo>/target/debug/pproxy. It is started by
pproxy_launcher.py as `pproxy run -c <tmp>/carrera.yaml` with free ports, an
embedded Kafka mock cluster and one embedded delay topic (DELAY_TOPIC).
"""

import contextlib
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GEN_DIR = HERE / "gen"
if str(GEN_DIR) not in sys.path:
    sys.path.insert(0, str(GEN_DIR))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from pproxy_launcher import REPO_ROOT, Pproxy, embedded_yaml, free_ports  # noqa: E402, F401

DELAY_TOPIC = "py_delay"

# The running session proxy (set by the fixture), whose logs are shown when something fails.
_proxy = []


def log_tail_text():
    return _proxy[0].log_tail() if _proxy else "<no proxy log files>"


def all_log_text():
    """Everything the proxy logged so far (console + log dir), ANSI colours stripped."""
    text = []
    for f in _proxy[0].log_files() if _proxy else []:
        try:
            text.append(f.read_bytes().decode("utf-8", "replace"))
        except OSError:
            pass
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(text))


def start_proxy(tmp, yaml, admin_port):
    """A Pproxy in tmp that answers /ready, or the test fails with its log tail."""
    try:
        p = Pproxy(tmp, yaml, admin_port)
    except FileNotFoundError as e:
        pytest.fail(str(e))
    if not p.wait_ready():
        p.stop()
        pytest.fail("pproxy did not answer 200 on /ready (exit status %s)\n%s"
                    % (p.proc.poll(), p.log_tail()))
    return p


def _split_server(extra):
    """(lines of a top-level `server:` block in `extra`, the rest): embedded_yaml writes the
    server block itself, and YAML refuses a key twice."""
    server, rest, inside = [], [], False
    for line in extra.splitlines():
        if line.rstrip() == "server:":
            inside = True
        elif inside and line.startswith("  "):
            server.append(line[2:])
        else:
            inside = False
            rest.append(line)
    return "\n".join(server), "".join(l + "\n" for l in rest)


def config_yaml(tmp, port, admin_port, extra=""):
    """carrera.yaml of an embedded-mode proxy in tmp with DELAY_TOPIC; `extra` is appended YAML
    (top-level keys; a `server:` block joins the launcher's)."""
    server, rest = _split_server(extra)
    return embedded_yaml(port, admin_port, tmp, delay_topics=[DELAY_TOPIC], server=server,
                         extra=rest)


def write_config(tmp, port, admin_port, extra=""):
    """Rewrites <tmp>/carrera.yaml (for a reload with SIGHUP); returns its path."""
    conf = Path(tmp) / "carrera.yaml"
    conf.write_text(config_yaml(tmp, port, admin_port, extra))
    return conf


@contextlib.contextmanager
def run_proxy(tmp, extra=""):
    """A pproxy of the caller's own in embedded mode under tmp (free ports, DELAY_TOPIC, `extra`
    YAML), ready; yields its ports, process, directory and config path, and stops it on exit."""
    port, admin_port = free_ports(2)
    p = start_proxy(tmp, config_yaml(tmp, port, admin_port, extra), admin_port)
    try:
        yield {"host": "127.0.0.1", "port": port, "admin_port": admin_port, "proc": p.proc,
               "dir": Path(tmp), "conf": p.conf}
    except BaseException:
        print(p.log_tail())
        raise
    finally:
        p.stop()


@pytest.fixture(scope="session")
def proxy_proc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pproxy")
    port, admin_port = free_ports(2)
    p = start_proxy(tmp, embedded_yaml(port, admin_port, tmp, delay_topics=[DELAY_TOPIC]),
                    admin_port)
    _proxy[:] = [p]
    try:
        yield {"host": "127.0.0.1", "port": port, "admin_port": admin_port, "proc": p.proc,
               "dir": tmp}
    finally:
        p.stop()


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
    if not _proxy:
        return
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.section("pproxy log tail")
        terminalreporter.write_line(log_tail_text())
