#!/usr/bin/env python3
"""Hostile-client reliability run against a local pproxy (loopback only, bounded).

Starts target/debug/pproxy (or $PPROXY_BIN) on free ports with an embedded Kafka (through
tests/python/pproxy_launcher.py), runs one
well-behaved client for the whole run (sendSync heartbeat + sendSync to `hostile_ok`, one
connection), and runs a series of bounded attack phases beside it. For each phase it reports the
good client's latency (p50/p99/max) and errors, the server's RSS (start/peak/end), open fds and
liveness (pid + GET /health). Exit status 1 if the server died or the good client saw any error
or non-0 code.

Usage: python3 docs/investigations/hostile/run.py [--only a,b,...] [--phase-secs N]
Python 3 stdlib only.
"""

import argparse
import os
import random
import resource
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.dont_write_bytecode = True  # leave no .pyc next to tests/python/rawthrift.py
sys.path.insert(0, str(REPO / "tests" / "python"))
import rawthrift as rt  # noqa: E402  (hand-written compact encoder of the repo's wire tests)
from pproxy_launcher import (  # noqa: E402
    HOST, Pproxy, embedded_yaml, free_ports, http_get, proxy_bin)

GOOD_TIMEOUT_S = 5.0        # good client's socket timeout: a reply slower than this is an error
GOOD_PAUSE_S = 0.01         # pause between good-client iterations
SETTLE_MAX_S = 6.0          # after a phase: wait (bounded) for the server's fd count to come back


# ------------------------------------------------------------------ helpers
def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def nofile_limit(pid):
    try:
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return int(parts[3]), int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def metric(port, name):
    """Sum of all samples of a Prometheus metric (None if unavailable)."""
    st, body = http_get(port, "/metrics")
    if st != 200:
        return None
    total, seen = 0.0, False
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except ValueError:
                pass
    return total if seen else None


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def rst_close(s):
    """Close with RST (no TIME_WAIT on our side: keeps ephemeral ports available)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def heartbeat_payload(seqid):
    return rt.c_heartbeat(seqid=seqid)


def send_payload(seqid):
    return rt.c_send_sync(rt.c_message(topic="hostile_ok", body=b"x"), timeout=3000, seqid=seqid)


# ------------------------------------------------------------------ proxy process
class Proxy(Pproxy):
    """pproxy on free ports with an embedded Kafka, default limits; `server` adds settings."""

    def __init__(self, binary, tmp, server=""):
        self.port, self.admin = free_ports(2)
        super().__init__(tmp, embedded_yaml(self.port, self.admin, tmp, server=server),
                         self.admin, binary=binary, new_session=True)

    def health(self):
        return http_get(self.admin, "/health", timeout=3.0)[0]


# ------------------------------------------------------------------ well-behaved client
class GoodClient(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.phase = "setup"
        self.records = []          # (phase, kind, latency_s, code or None, error or None)
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.seq = 0
        self.sock = None

    def _connect(self):
        s = socket.create_connection((HOST, self.port), timeout=GOOD_TIMEOUT_S)
        s.settimeout(GOOD_TIMEOUT_S)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def _one(self, kind, build):
        phase = self.phase
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        t0 = time.monotonic()
        code = err = None
        try:
            if self.sock is None:
                self.sock = self._connect()
            self.sock.sendall(rt.frame(build(self.seq)))
            mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(self.sock))
            if mtype != rt.REPLY:
                err = "reply type %d: %r" % (mtype, body)
            elif seq != self.seq:
                err = "seqid mismatch %d != %d" % (seq, self.seq)
            else:
                code = body.get(0, {}).get(1)
        except Exception as e:  # noqa: BLE001
            err = "%s: %s" % (type(e).__name__, e)
            if self.sock is not None:
                rst_close(self.sock)
            self.sock = None
        t1 = time.monotonic()
        lat = t1 - t0
        with self.lock:
            self.records.append((phase, kind, lat, code, err, t1))

    def run(self):
        while not self.stop_ev.is_set():
            self._one("heartbeat", heartbeat_payload)
            self._one("send", send_payload)
            time.sleep(GOOD_PAUSE_S)
        if self.sock is not None:
            self.sock.close()

    def stats(self, phase):
        with self.lock:
            rec = [r for r in self.records if r[0] == phase]
        lats = sorted(r[2] for r in rec)
        bad = [r for r in rec if r[4] is not None or r[3] != 0]
        done = [r[5] for r in rec]
        gap = max((b - a for a, b in zip(done, done[1:])), default=None)
        return {
            "n": len(rec), "gap": gap,
            "p50": pct(lats, 50), "p99": pct(lats, 99), "max": lats[-1] if lats else None,
            "bad": bad,
        }


# ------------------------------------------------------------------ sampler
class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.peak_fds = 0
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def reset(self):
        with self.lock:
            self.peak_rss = rss_kib(self.pid) or 0
            self.peak_fds = fd_count(self.pid) or 0

    def run(self):
        while not self.stop_ev.wait(0.1):
            r, f = rss_kib(self.pid), fd_count(self.pid)
            with self.lock:
                if r:
                    self.peak_rss = max(self.peak_rss, r)
                if f:
                    self.peak_fds = max(self.peak_fds, f)


# ------------------------------------------------------------------ attacks
def bounded(deadline):
    return time.monotonic() < deadline


def phase_baseline(ctx, secs):
    time.sleep(secs)
    return "no attackers for %.0f s" % secs


def phase_truncated(ctx, secs):
    """Frame length 100, 10 bytes sent, close; 2000 connections sequentially."""
    deadline = time.monotonic() + secs
    ok = fail = 0
    data = struct.pack(">i", 100) + rt.c_heartbeat()[:10]
    for _ in range(2000):
        if not bounded(deadline):
            break
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=2)
            s.sendall(data)
            s.close()
            ok += 1
        except OSError:
            fail += 1
    return "%d connections done, %d connect/send errors" % (ok, fail)


def phase_huge(ctx, secs):
    """Frame header 0x7fffffff then junk; 200 connections, 4 in parallel.

    Even-numbered: 70 KiB of random junk (no parsable header in the first 64 KiB -> server should
    close). Odd-numbered: a valid compact sendSync header then 1 MiB of junk, then close (server
    streams and discards)."""
    deadline = time.monotonic() + secs
    counts = {"sent": 0, "err": 0, "server_closed": 0}
    lock = threading.Lock()
    idx = iter(range(200))
    hdr = rt.c_header("sendSync")

    def worker():
        while bounded(deadline):
            with lock:
                i = next(idx, None)
            if i is None:
                return
            try:
                s = socket.create_connection((HOST, ctx.port), timeout=3)
                s.settimeout(3)
                if i % 2 == 0:
                    s.sendall(struct.pack(">i", 0x7FFFFFFF) + os.urandom(70 * 1024))
                    try:
                        closed = s.recv(1) == b""
                    except (ConnectionResetError, socket.timeout):
                        closed = True
                    with lock:
                        counts["server_closed"] += int(closed)
                else:
                    s.sendall(struct.pack(">i", 0x7FFFFFFF) + hdr + os.urandom(1024 * 1024))
                s.close()
                with lock:
                    counts["sent"] += 1
            except OSError:
                with lock:
                    counts["err"] += 1

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return "%d sent, %d errors, %d/100 junk-header conns closed by server" % (
        counts["sent"], counts["err"], counts["server_closed"])


def phase_random(ctx, secs):
    """os.urandom(1..64 KiB) then close; 500 connections sequentially."""
    deadline = time.monotonic() + secs
    ok = fail = 0
    rnd = random.Random(1234)
    for _ in range(500):
        if not bounded(deadline):
            break
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=2)
            s.settimeout(2)
            s.sendall(os.urandom(rnd.randint(1, 64 * 1024)))
            s.close()
            ok += 1
        except OSError:
            fail += 1
    return "%d connections done, %d errors (RST on send is expected)" % (ok, fail)


def _drip(ctx, secs, n, frame_bytes, what):
    """n connections, each sending `frame_bytes` one byte per second for `secs` seconds."""
    socks = []
    fail = 0
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=2)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            fail += 1
    end = time.monotonic() + secs
    pos = 0
    send_err = 0
    while time.monotonic() < end and pos < len(frame_bytes):
        tick = time.monotonic()
        for s in socks:
            try:
                s.send(frame_bytes[pos:pos + 1])
            except OSError:
                send_err += 1
        pos += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    ctx.note("during", "server fds %s, pproxy_connections %s" % (
        fd_count(ctx.pid), metric(ctx.admin, "pproxy_connections")))
    for s in socks:
        rst_close(s)
    return "%d %s connections (%d connect errors), %d bytes each sent, %d send errors" % (
        len(socks), what, fail, pos, send_err)


def phase_slowloris(ctx, secs):
    """200 connections, one byte/s of a valid 1 KiB sendSync frame."""
    n = 900
    while len(rt.c_send_sync(rt.c_message(topic="carrera_heartbeat", body=b"p" * n))) < 1020:
        n += 1
    payload = rt.c_send_sync(rt.c_message(topic="carrera_heartbeat", body=b"p" * n))
    assert len(payload) == 1020, len(payload)
    return _drip(ctx, secs, 200, rt.frame(payload), "slowloris")


def phase_idle(ctx, secs):
    """10 000 idle connections held open."""
    target = 10000
    socks = []
    fail = 0
    errs = {}
    t0 = time.monotonic()
    deadline = t0 + 30
    for _ in range(target):
        if not bounded(deadline):
            break
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=2)
            socks.append(s)
        except OSError as e:
            fail += 1
            errs[type(e).__name__ + ":" + str(e.errno)] = errs.get(type(e).__name__ + ":" + str(e.errno), 0) + 1
            if fail > 200:
                break
    opened = time.monotonic() - t0
    time.sleep(1.0)
    # Are they really served (not just sitting in the backlog)? Probe a sample with a heartbeat.
    probe_ok = 0
    sample = socks[:: max(1, len(socks) // 20)][:20]
    for s in sample:
        try:
            s.settimeout(3)
            mt, _, _, body = rt.call(s, rt.c_heartbeat(seqid=7))
            probe_ok += int(mt == rt.REPLY and body.get(0, {}).get(1) == 0)
        except Exception:  # noqa: BLE001
            pass
    hold_end = time.monotonic() + secs
    ctx.note("during", "server fds %s, pproxy_connections %s" % (
        fd_count(ctx.pid), metric(ctx.admin, "pproxy_connections")))
    while time.monotonic() < hold_end:
        time.sleep(0.5)
    ctx.note("during", "server fds at end of hold %s" % fd_count(ctx.pid))
    for s in socks:
        rst_close(s)
    return ("%d/%d idle connections opened in %.1f s (%d failures %s), held %.0f s; "
            "heartbeat probe on %d of them: %d ok" % (
                len(socks), target, opened, fail, errs or "", secs, len(sample), probe_ok))


def phase_churn(ctx, secs):
    """20 000 connect+close from 4 threads, bounded."""
    deadline = time.monotonic() + secs
    counts = {"ok": 0, "err": 0}
    errs = {}
    lock = threading.Lock()

    def worker():
        ok = err = 0
        local_errs = {}
        for _ in range(5000):
            if not bounded(deadline):
                break
            try:
                s = socket.create_connection((HOST, ctx.port), timeout=2)
                s.close()
                ok += 1
            except OSError as e:
                err += 1
                k = str(e.errno)
                local_errs[k] = local_errs.get(k, 0) + 1
        with lock:
            counts["ok"] += ok
            counts["err"] += err
            for k, v in local_errs.items():
                errs[k] = errs.get(k, 0) + v

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.monotonic() - t0
    return "%d connect+close in %.1f s (%.0f/s), %d errors %s" % (
        counts["ok"], el, counts["ok"] / max(el, 1e-9), counts["err"], errs or "")


def phase_pipeline(ctx, secs):
    """One connection pipelines 10 000 sendSync heartbeats and never reads; held `secs`."""
    s = socket.create_connection((HOST, ctx.port), timeout=2)
    s.setblocking(False)
    data = b"".join(rt.frame(rt.c_heartbeat(seqid=i)) for i in range(10000))
    sent = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if sent < len(data):
            try:
                sent += s.send(data[sent:sent + 65536])
                continue
            except BlockingIOError:
                pass
        time.sleep(0.05)
    frames_sent, off = 0, 0
    while off + 4 <= sent:
        off += 4 + struct.unpack(">i", data[off:off + 4])[0]
        if off <= sent:
            frames_sent += 1
    ctx.note("during", "server fds %s" % fd_count(ctx.pid))
    rst_close(s)
    return "%d of %d bytes (%d of 10000 whole frames) accepted by the socket before it blocked; " \
           "held %.0f s without reading" % (sent, len(data), frames_sent, secs)


def phase_slow_declared(ctx, secs):
    """100 connections declare a 4 000 000-byte frame, then send 1 byte/s."""
    body = rt.c_heartbeat()
    data = struct.pack(">i", 4_000_000) + body + b"\x00" * 64
    return _drip_declared(ctx, secs, data)


def _drip_declared(ctx, secs, data):
    socks = []
    fail = 0
    for _ in range(100):
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=2)
            s.setblocking(False)
            s.send(data[:4])  # the frame header right away
            socks.append(s)
        except OSError:
            fail += 1
    end = time.monotonic() + secs
    pos = 4
    while time.monotonic() < end:
        tick = time.monotonic()
        for s in socks:
            try:
                s.send(data[pos:pos + 1])
            except OSError:
                pass
        pos += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    ctx.note("during", "server fds %s, RSS %s KiB" % (fd_count(ctx.pid), rss_kib(ctx.pid)))
    for s in socks:
        rst_close(s)
    return "%d connections (%d connect errors) declared 4 000 000 B (total %.0f MiB > 256 MiB " \
           "budget), dripped %d bytes each" % (len(socks), fail, len(socks) * 4e6 / 2**20, pos - 4)


PHASES = [
    ("a", "baseline", phase_baseline, 10),
    ("b", "truncated x2000", phase_truncated, 15),
    ("c", "2GB header+junk x200", phase_huge, 15),
    ("d", "random bytes x500", phase_random, 15),
    ("e", "slowloris x200", phase_slowloris, 15),
    ("f", "10k idle conns", phase_idle, 10),
    ("g", "churn 20k", phase_churn, 20),
    ("h", "pipeline no-read", phase_pipeline, 10),
    ("i", "slow 4MB frames x100", phase_slow_declared, 15),
]


class Ctx:
    def __init__(self, proxy):
        self.port = proxy.port
        self.admin = proxy.admin
        self.pid = proxy.pid
        self.notes = []

    def note(self, k, v):
        self.notes.append("%s: %s" % (k, v))


def fmt_ms(v):
    return "-" if v is None else "%.1f" % (v * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated phase letters (baseline always runs)")
    ap.add_argument("--phase-secs", type=float, default=None, help="override every phase's bound")
    args = ap.parse_args()

    binary = proxy_bin()
    if not binary.exists():
        print("missing %s (run `cargo build`)" % binary)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    my_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)

    tmp = tempfile.mkdtemp(prefix="pproxy-hostile-")
    proxy = Proxy(binary, tmp)
    rc = 0
    results = []
    good = sampler = None
    try:
        if not proxy.wait_ready():
            print("proxy not ready\n" + proxy.log_tail())
            return 2
        srv_nofile = nofile_limit(proxy.pid)
        print("pproxy pid %d thrift %d admin %d; client RLIMIT_NOFILE %s; server Max open files %s"
              % (proxy.pid, proxy.port, proxy.admin, my_nofile, srv_nofile))
        if srv_nofile and srv_nofile[0] < 10000 + 100:
            print("NOTE: server soft fd limit %d is below the 10 000 idle connections of phase f"
                  % srv_nofile[0])
        sampler = Sampler(proxy.pid)
        sampler.start()
        good = GoodClient(proxy.port)
        good.start()
        only = set(x for x in args.only.split(",") if x)
        for letter, name, fn, secs in PHASES:
            if only and letter not in only and letter != "a":
                continue
            if args.phase_secs:
                secs = args.phase_secs
            if not proxy.alive():
                results.append((letter, name, None))
                continue
            ctx = Ctx(proxy)
            sampler.reset()
            rss0, fds0 = rss_kib(proxy.pid), fd_count(proxy.pid)
            good.phase = letter
            t0 = time.monotonic()
            print("\n== phase %s: %s (bound %.0f s)" % (letter, name, secs), flush=True)
            try:
                summary = fn(ctx, secs)
            except Exception as e:  # noqa: BLE001
                summary = "ATTACK SCRIPT ERROR %s: %s" % (type(e).__name__, e)
            attack_s = time.monotonic() - t0
            fds_attack_end = fd_count(proxy.pid)
            # settle: wait (bounded) for the server to release the attackers' fds
            settle_end = time.monotonic() + SETTLE_MAX_S
            while time.monotonic() < settle_end:
                f = fd_count(proxy.pid)
                if f is None or f <= fds0 + 2:
                    break
                time.sleep(0.2)
            time.sleep(0.5)
            alive = proxy.alive()
            health = proxy.health() if alive else None
            row = {
                "summary": summary, "notes": ctx.notes, "secs": attack_s,
                "rss0": rss0, "rss_peak": sampler.peak_rss, "rss1": rss_kib(proxy.pid),
                "fds0": fds0, "fds_peak": sampler.peak_fds, "fds_attack_end": fds_attack_end,
                "fds1": fd_count(proxy.pid), "alive": alive, "health": health,
                "conns": metric(proxy.admin, "pproxy_connections") if alive else None,
                "good": good.stats(letter),
            }
            results.append((letter, name, row))
            g = row["good"]
            print("  %s" % summary)
            for n in ctx.notes:
                print("  %s" % n)
            print("  good: n=%d p50=%s p99=%s max=%s ms, longest gap between replies %s ms, bad=%d" % (
                g["n"], fmt_ms(g["p50"]), fmt_ms(g["p99"]), fmt_ms(g["max"]), fmt_ms(g["gap"]),
                len(g["bad"])))
            for b in g["bad"][:5]:
                print("    bad: %s code=%s err=%s lat=%.2fs" % (b[1], b[3], b[4], b[2]))
            print("  server: alive=%s health=%s RSS KiB %s/%s/%s fds %s/peak %s/%s (after settle) "
                  "pproxy_connections=%s" % (alive, health, rss0, row["rss_peak"], row["rss1"],
                                             fds0, row["fds_peak"], row["fds1"], row["conns"]),
                  flush=True)
    finally:
        if good is not None:
            good.phase = "teardown"
            good.stop_ev.set()
            good.join(timeout=GOOD_TIMEOUT_S * 2 + 1)
        if sampler is not None:
            sampler.stop_ev.set()
        died = not proxy.alive()
        exit_code = proxy.proc.poll()
        if died:
            print("\nSERVER DIED (exit %s)\n%s" % (exit_code, proxy.log_tail()))
        proxy.stop()

    # final table
    print("\n%-2s %-22s %5s %6s %8s %8s %8s %8s %4s | %8s %8s %8s | %5s %5s %5s | %-5s %-6s" % (
        "ph", "attack", "secs", "n", "p50ms", "p99ms", "maxms", "gapms", "bad", "RSS0MiB", "peakMiB", "endMiB",
        "fd0", "fdpk", "fd1", "alive", "health"))
    any_bad = False
    for letter, name, row in results:
        if row is None:
            print("%-2s %-22s skipped: server dead" % (letter, name))
            continue
        g = row["good"]
        mib = lambda k: "-" if row[k] is None else "%.1f" % (row[k] / 1024.0)  # noqa: E731
        print("%-2s %-22s %5.1f %6d %8s %8s %8s %8s %4d | %8s %8s %8s | %5s %5s %5s | %-5s %-6s" % (
            letter, name, row["secs"], g["n"], fmt_ms(g["p50"]), fmt_ms(g["p99"]), fmt_ms(g["max"]),
            fmt_ms(g["gap"]),
            len(g["bad"]), mib("rss0"), mib("rss_peak"), mib("rss1"), row["fds0"],
            row["fds_peak"], row["fds1"], row["alive"], row["health"]))
        any_bad = any_bad or bool(g["bad"])
    if died:
        print("FAIL: server died")
        rc = 1
    if any_bad:
        print("FAIL: the well-behaved client got errors or non-0 codes")
        rc = 1
    if rc == 0:
        print("OK: server stayed up, well-behaved client saw no error")
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("proxy files kept in %s" % tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main())
