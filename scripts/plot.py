#!/usr/bin/env python3
"""Plots of scripts/bench.sh's JSON summaries, as SVG (issue 16).

    scripts/plot.py BENCH_OUT DOCS_DIR      e.g. scripts/plot.py target/bench docs/bench

scripts/bench.sh runs this at the end of every mode, in a virtualenv outside the repository
(plot_venv in scripts/bench.sh). It reads every JSON summary in BENCH_OUT (loadgen's, and the
lateness scrapes of `bench.sh delay` and `pending`) and writes into DOCS_DIR:

    throughput-connections.svg  throughput against connections, pproxy and the direct producer,
                                Kafka and RocketMQ (the `sweep` summaries)
    latency-percentiles.svg     p50 / p90 / p99 / p99.9 per side: half-rate and lone-client runs
                                of `full` (or the sweep's 1 and 64 connections), delay adds
    cpu-per-message.svg         CPU µs per stored message by thread, stacked: the direct
                                producer's process (the load generator) against pproxy's process
    delay-lateness.svg          lateness of delay fires (pproxy_delay_fire_lateness_seconds,
                                scraped before and after `bench.sh delay`, and the 10k/s phase
                                of `bench.sh pending`)

A figure is written only when its data exists; the others are left as they are. The output
depends on the JSON alone (fixed svg.hashsalt, no date in the metadata): the same summaries give
the same files byte for byte. The caption of each figure says when and on what machine the data
was measured (from the summaries' unix_time and loadavg and BENCH_OUT/env-*.txt).
"""

import glob
import json
import os
import re
import sys
import time

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams.update(
    {
        "svg.hashsalt": "pproxy-bench",
        "svg.fonttype": "path",  # text as paths: the same look on every viewer
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.axisbelow": True,
    }
)
if "svg.id" in matplotlib.rcParams:  # matplotlib >= 3.8
    matplotlib.rcParams["svg.id"] = "pproxy-bench"

SIDES = (("direct", "direct producer", "#7f7f7f"), ("proxy", "pproxy", "#1f77b4"))
BACKENDS = (("kafka", "Kafka"), ("rmq", "RocketMQ"))
PCTS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))


def load_all(out):
    """name (file name without .json) -> summary, for every parsable JSON object in OUT."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(j, dict):
            runs[os.path.basename(path)[:-5]] = j
    return runs


def machine(out):
    """'2 vCPU AMD EPYC ...' from the newest env-*.txt, or ''."""
    envs = sorted(glob.glob(os.path.join(out, "env-*.txt")))
    info = {}
    for path in envs:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(": ")
                info[k.strip()] = v.strip()
    parts = []
    if info.get("nproc"):
        parts.append(f"{info['nproc']} CPUs")
    if info.get("cpu"):
        parts.append(info["cpu"])
    if info.get("git"):
        parts.append(f"git {info['git']}")
    return ", ".join(parts)


def caption(fig, out, runs):
    """When and where the figure's runs were measured, under the figure."""
    times = sorted(r["unix_time"] for r in runs if r.get("unix_time"))
    loads = sorted(
        float(r["loadavg"].split()[0]) for r in runs if r.get("loadavg", "").strip()
    )
    text = []
    if times:
        a = time.strftime("%Y-%m-%d %H:%M", time.gmtime(times[0]))
        b = time.strftime("%H:%M", time.gmtime(times[-1]))
        text.append(f"measured {a}-{b} UTC")
    if loads:
        text.append(f"load average {loads[0]:.1f}-{loads[-1]:.1f}")
    m = machine(out)
    if m:
        text.append(m)
    text.append("figures are this machine's, at that time: compare sides, not machines")
    fig.text(0.01, 0.005, "; ".join(text), fontsize=6.5, color="#555555", ha="left", va="bottom")


def save(fig, docs, name):
    path = os.path.join(docs, name)
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "scripts/plot.py"})
    plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


# ------------------------------------------------------------------ throughput x connections

SWEEP = re.compile(r"^sweep-(kafka|rmq)-c(\d+)-(direct|proxy)(?:-r(\d+))?$")


def plot_sweep(runs, out, docs):
    points = {}  # (backend, side) -> {conns: [throughput...]}
    used = []
    for name, j in runs.items():
        m = SWEEP.match(name)
        if not m or "throughput" not in j:
            continue
        be, conns, side = m.group(1), int(m.group(2)), m.group(3)
        points.setdefault((be, side), {}).setdefault(conns, []).append(j["throughput"])
        used.append(j)
    if not points:
        return
    backends = [b for b in BACKENDS if any(k[0] == b[0] for k in points)]
    fig, axes = plt.subplots(1, len(backends), figsize=(4.6 * len(backends), 3.6), squeeze=False)
    for ax, (be, title) in zip(axes[0], backends):
        allc = set()
        for side, label, color in SIDES:
            p = points.get((be, side))
            if not p:
                continue
            xs = sorted(p)
            allc.update(xs)
            ys = [sum(p[x]) / len(p[x]) for x in xs]
            ax.plot(xs, ys, marker="o", color=color, label=label)
            for x in xs:  # every run, when a point has more than one
                if len(p[x]) > 1:
                    ax.scatter([x] * len(p[x]), p[x], s=8, color=color, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(allc))
        ax.set_xticklabels([str(c) for c in sorted(allc)])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("connections (senders), sendSync, 100 B, closed loop")
        ax.set_ylabel("acknowledged messages/s")
        ax.set_title(f"{title}: throughput against connections")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}".replace(",", " ")))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    caption(fig, out, used)
    save(fig, docs, "throughput-connections.svg")


# ------------------------------------------------------------------ latency percentiles


def pairs(runs, prefix):
    """[(side, [summaries of its runs])] for PREFIX-{direct,proxy}[-rN]."""
    found = []
    for side, _, _ in SIDES:
        rs = [
            j
            for n, j in sorted(runs.items())
            if re.fullmatch(re.escape(f"{prefix}-{side}") + r"(-r\d+)?", n) and j.get("latency_us")
        ]
        if rs:
            found.append((side, rs))
    return found


def sweep_cases(runs, fmt):
    """The sweep's 1 and 64 connections, titled by FMT ({title}, {conns}), where they ran."""
    cases = []
    for be, title in BACKENDS:
        for c in (1, 64):
            if pairs(runs, f"sweep-{be}-c{c}"):
                conns = f"{c} conn{'s' if c > 1 else ''}"
                cases.append((f"sweep-{be}-c{c}", fmt.format(title=title, conns=conns)))
    return cases


def latency_cases(runs):
    cases = []
    for be, title in BACKENDS:
        for kind, what in (("half", "half of the lower max rate, 64 conns"), ("lone", "one sync client")):
            if pairs(runs, f"{be}-{kind}"):
                cases.append((f"{be}-{kind}", f"{title}: {what}"))
    if not cases:  # a sweep alone: its lone client and its 64 connections
        cases = sweep_cases(runs, "{title}: {conns}, max rate")
    if pairs(runs, "delay-adds"):
        cases.append(("delay-adds", "Kafka: sendDelaySync adds, max rate"))
    return cases


def plot_latency(runs, out, docs):
    cases = latency_cases(runs)
    if not cases:
        return
    cols = min(len(cases), 3)
    rows = (len(cases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    used = []
    width = 0.38
    for i, (prefix, title) in enumerate(cases):
        ax = axes[i // cols][i % cols]
        found = pairs(runs, prefix)
        for k, (side, rs) in enumerate(found):
            label, color = next((l, c) for s, l, c in SIDES if s == side)
            used.extend(rs)
            xs = [x + (k - (len(found) - 1) / 2) * width for x in range(len(PCTS))]
            means = [sum(r["latency_us"][p] for r in rs) / len(rs) / 1000 for p, _ in PCTS]
            ax.bar(xs, means, width * 0.95, color=color, label=label)
            if len(rs) > 1:  # the runs behind each bar
                for r in rs:
                    ax.scatter(xs, [r["latency_us"][p] / 1000 for p, _ in PCTS], s=7, color="black", zorder=3)
        ax.set_xticks(range(len(PCTS)))
        ax.set_xticklabels([l for _, l in PCTS])
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title(title, fontsize=8.5)
        ax.legend(fontsize=7, loc="upper left")
    for j in range(len(cases), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Latency percentiles, 100 B (bars: mean of the runs; dots: each run)", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    caption(fig, out, used)
    save(fig, docs, "latency-percentiles.svg")


# ------------------------------------------------------------------ CPU per message by thread


def cpu_cases(runs):
    cases = []
    for be, title in BACKENDS:
        if pairs(runs, f"{be}-max-100"):
            cases.append((f"{be}-max-100", f"{title}\nmax, 64 conns"))
        for rate in (1000, 5000):
            if pairs(runs, f"{be}-paced-{rate}"):
                cases.append((f"{be}-paced-{rate}", f"{title}\n{rate} msg/s"))
        if pairs(runs, f"{be}-autobatch-100"):
            cases.append((f"{be}-autobatch-100", f"{title} autoBatch\nmax, 64 conns"))
    if not cases:
        cases = sweep_cases(runs, "{title}\nmax, {conns}")
    if pairs(runs, "delay-adds"):
        cases.append(("delay-adds", "Kafka\ndelay adds"))
    return cases


def thread_group(name):
    """Thread names as loadgen reports them (digits dropped, 15 characters at most)."""
    if name.startswith(("tokio-runtime-w", "tokio-rt-worker")):
        return "tokio workers"
    return name


def plot_cpu(runs, out, docs):
    cases = cpu_cases(runs)
    if not cases:
        return
    bars = []  # (x label, {thread: us/msg})
    used = []
    for prefix, title in cases:
        for side, rs in pairs(runs, prefix):
            key = "self_threads" if side == "direct" else "proxy_threads"
            per = {}
            rs = [r for r in rs if isinstance(r.get(key), dict)]
            if not rs:
                continue
            used.extend(rs)
            for r in rs:
                for t, v in r[key].items():
                    g = thread_group(t)
                    per[g] = per.get(g, 0.0) + v["us_per_msg"] / len(rs)
            who = "direct\n(loadgen)" if side == "direct" else "pproxy"
            bars.append((f"{title}\n{who}", per))
    if not bars:
        return
    totals = {}
    for _, per in bars:
        for t, v in per.items():
            totals[t] = totals.get(t, 0.0) + v
    top = [t for t, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:9]]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.05 * len(bars) + 2.6), 4.4))
    cmap = matplotlib.colormaps["tab10"]
    bottoms = [0.0] * len(bars)
    for i, t in enumerate(top + ["other"]):
        vals = [
            (per.get(t, 0.0) if t != "other" else sum(v for k, v in per.items() if k not in top))
            for _, per in bars
        ]
        if not any(vals):
            continue
        ax.bar(range(len(bars)), vals, 0.7, bottom=bottoms, label=t,
               color=cmap(i % 10) if t != "other" else "#cccccc")
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    for x, b in enumerate(bottoms):
        ax.text(x, b, f"{b:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, max(bottoms) * 1.1 or 1)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], fontsize=6.5)
    ax.set_ylabel("CPU µs per stored message")
    ax.set_title("CPU per message by thread: the direct producer's process against pproxy's (mean of the runs)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="thread", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    caption(fig, out, used)
    save(fig, docs, "cpu-per-message.svg")


# ------------------------------------------------------------------ delay lateness


def fmt_le(s):
    ms = s * 1000
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    return f"{ms:g} ms"


def lateness_shares(d):
    """Bucket labels and the share of fires (%) in each, from a lateness_diff summary."""
    labels, counts, prev, lo = [], [], 0, None
    for le, cum in d["buckets"]:  # [[le seconds or "+Inf", cumulative count]...]
        counts.append(cum - prev)
        prev = cum
        hi = "∞" if le == "+Inf" else fmt_le(float(le))
        labels.append(f"≤ {hi}" if lo is None else f"{lo} –\n{hi}")
        lo = hi
    total = max(prev, 1)
    return labels, [100 * c / total for c in counts], counts


def plot_lateness(runs, out, docs):
    # `delay`: adds at the maximum rate, fired as they fall due; `pending`: 10k adds/s due 2 s
    # later, so 10k fires/s, with the far-future messages of that run pending (issue 16's case).
    series = []
    d = runs.get("delay-lateness")
    if d and d.get("buckets"):
        what = [f"{d.get('fires', 0):,} fires".replace(",", " ")]
        if d.get("adds_per_s"):
            what.append(f"added at {d['adds_per_s']:,.0f}/s (max rate)".replace(",", " "))
        if d.get("delay_ms") is not None:
            what.append(f"due {d['delay_ms']} ms later")
        series.append(("delay: " + ", ".join(what), d))
    p = runs.get("pending-lateness")
    if p and p.get("buckets"):
        fires = f"{p.get('fires', 0):,}".replace(",", " ")
        held = f"{p.get('pending_before', 0):,.0f}".replace(",", " ")
        series.append((f"pending: {fires} fires at 10k/s, {held} pending on disk", p))
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    width = 0.8 / len(series)
    for i, (name, d) in enumerate(series):
        labels, shares, counts = lateness_shares(d)
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(shares))]
        ax.bar(xs, shares, width, label=name)
        for x, sh, c in zip(xs, shares, counts):
            if c:
                ax.text(x, sh, f"{sh:.1f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("lateness (hand-off time minus due time), pproxy_delay_fire_lateness_seconds buckets")
    ax.set_ylabel("% of fires")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    ax.set_title("Delay fire lateness, Kafka, one node", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    used = [d for _, d in series] + [runs[n] for n in ("delay-adds-proxy",) if n in runs]
    caption(fig, out, used)
    save(fig, docs, "delay-lateness.svg")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    out, docs = sys.argv[1], sys.argv[2]
    os.makedirs(docs, exist_ok=True)
    runs = load_all(out)
    plot_sweep(runs, out, docs)
    plot_latency(runs, out, docs)
    plot_cpu(runs, out, docs)
    plot_lateness(runs, out, docs)


if __name__ == "__main__":
    main()
