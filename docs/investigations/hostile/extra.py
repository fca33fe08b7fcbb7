#!/usr/bin/env python3
"""Follow-up probes for the findings of run.py (bounded, loopback, stdlib only).

1. inflight-budget threshold: N connections each send only a frame header announcing
   maxReadBufferBytes (5 000 000) and no payload; then a fresh client sends one heartbeat.
   N=53 fits into the 256 MiB budget (265 MB); N=54 does not.
2. RSS after repeated 10k-idle-connection rounds (leak vs allocator retention).
3. idle timeout vs a half-sent frame: with server.idleTimeoutSec: 2, is a connection that sent a
   frame header plus one byte ever closed? (an idle connection with no byte is the control).

Usage: python3 docs/investigations/hostile/extra.py
"""

import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as H  # noqa: E402

rt = H.rt


def heartbeat_fresh(port, timeout):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((H.HOST, port), timeout=timeout)
        s.settimeout(timeout)
        mt, _, _, body = rt.call(s, rt.c_heartbeat(seqid=1))
        s.close()
        return "code %s in %.1f ms" % (body.get(0, {}).get(1), (time.monotonic() - t0) * 1000)
    except Exception as e:  # noqa: BLE001
        return "%s after %.1f s" % (type(e).__name__, time.monotonic() - t0)


def probe_budget(p):
    for n in (53, 54):
        socks = []
        for _ in range(n):
            s = socket.create_connection((H.HOST, p.port), timeout=2)
            s.sendall(struct.pack(">i", 5_000_000))
            socks.append(s)
        time.sleep(1.0)
        res = heartbeat_fresh(p.port, 4.0)
        print("budget: %d connections x 4-byte header (5 000 000 declared, %d bytes sent in total): "
              "fresh heartbeat -> %s; RSS %s KiB" % (n, 4 * n, res, H.rss_kib(p.pid)))
        for s in socks:
            H.rst_close(s)
        time.sleep(1.5)
        print("budget: after closing them: fresh heartbeat -> %s" % heartbeat_fresh(p.port, 4.0))


def probe_idle_rounds(p):
    print("idle rounds: RSS before %s KiB" % H.rss_kib(p.pid))
    for r in range(3):
        socks = [socket.create_connection((H.HOST, p.port), timeout=2) for _ in range(10000)]
        time.sleep(1.0)
        held = H.rss_kib(p.pid)
        for s in socks:
            H.rst_close(s)
        time.sleep(2.0)
        print("idle rounds: round %d: RSS with 10k open %s KiB, after close %s KiB, fds %s" % (
            r + 1, held, H.rss_kib(p.pid), H.fd_count(p.pid)))


def probe_idle_timeout(binary):
    p = H.Proxy(binary, tempfile.mkdtemp(prefix="pproxy-hostile-idle-"), server="idleTimeoutSec: 2")
    try:
        if not p.wait_ready():
            print("idle timeout: proxy not ready")
            return
        idle = socket.create_connection((H.HOST, p.port), timeout=2)
        half = socket.create_connection((H.HOST, p.port), timeout=2)
        half.sendall(struct.pack(">i", 1000) + b"\x82")
        time.sleep(6.0)
        print("idle timeout 2 s, after 6 s: idle conn closed=%s; conn with half a frame closed=%s"
              % (rt.is_closed(idle, 0.5), rt.is_closed(half, 0.5)))
        idle.close()
        half.close()
    finally:
        p.stop()


def main():
    binary = H.proxy_bin()
    H.resource.setrlimit(H.resource.RLIMIT_NOFILE, (H.resource.getrlimit(H.resource.RLIMIT_NOFILE)[1],) * 2)
    tmp = tempfile.mkdtemp(prefix="pproxy-hostile-extra-")
    p = H.Proxy(binary, tmp)
    try:
        if not p.wait_ready():
            print("proxy not ready")
            return 2
        probe_budget(p)
        probe_idle_rounds(p)
    finally:
        p.stop()
    probe_idle_timeout(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
