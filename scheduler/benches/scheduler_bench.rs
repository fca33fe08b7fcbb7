//! Scheduler benchmarks (see docs/BENCHMARKS-scheduler.md).
//!
//! ```text
//! cargo bench -p scheduler --bench scheduler_bench -- MODE [args] [key=value ...]
//!   smoke                                   every mode, tiny, a few seconds
//!   adds    [clients=64] [secs=10]          durable adds/s, add latency, commit groups
//!   fires   [pending=1000000] [rate=10000] [secs=20]
//!                                           paced adds due 1-2 s ahead over a bulk-loaded store:
//!                                           fires/s, lateness, RSS
//!   maxfire [n=200000]                      n records due within 1 s: time until all fired
//!   rss     [pending=10000000]              RSS of a Scheduler over `pending` future records
//!   restart [pending=10000000]              Scheduler::open start -> first of 1000 overdue fires
//!   flush   [reps=100]                      Store::apply + Store::flush cost per group size
//! key=value options:
//!   engine=sled|redb        store engine of every store the run creates (default redb; an existing
//!               dir= store keeps its own engine)
//!   dir=PATH    (rss, restart) use/keep this store dir: bulk-load into it when it is empty,
//!               reuse it as is otherwise (restart adds 1000 fresh overdue records each run)
//!   limit=SECS  stop a bulk load after SECS (the figures are then for the loaded count)
//! ```
//!
//! Every mode prints a human table and one JSON line (starting with `{"mode":`).
//! Bulk loads run in a child process (this binary, hidden mode `_load`) so that sled's lock is
//! released and the load's heap does not count in the measured process's RSS.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scheduler::internals::now_ms;
use scheduler::internals::{Mutation, Store};
use scheduler::EngineKind;
use scheduler::{Config, FireMessage, Outcome, Scheduler, Sink, LATENESS_BUCKETS_MS};
use scheduler::{DelayId, Record};

/// The engine chosen by `engine=` (set once in `main`; children get it as `SCHED_ENGINE`).
fn engine() -> EngineKind {
    std::env::var("SCHED_ENGINE")
        .ok()
        .and_then(|v| EngineKind::parse(&v))
        .unwrap_or_default()
}

/// The scheduler configuration of every run: the defaults on the chosen engine.
fn cfg() -> Config {
    Config {
        engine: engine(),
        ..Config::default()
    }
}

/// Body bytes of every benchmark record.
const BODY_LEN: usize = 100;
/// Expire offset of a one-shot (ms-unit timestamps): 172 800 s.
const EXPIRE_MS: i64 = 172_800_000;
/// sled cache of the bulk-loading child (setup only; the Scheduler uses `cfg()`).
const LOAD_CACHE: u64 = 512 << 20;
/// Records per transaction in a bulk load.
const LOAD_BATCH: usize = 2000;

const NS_BULK: u32 = 0xb0;
const NS_OVERDUE: u32 = 0x0d;
const NS_SOON: u32 = 0x50;
const NS_ADD: u32 = 0xad;
const NS_CAL: u32 = 0xca;

// ---------------------------------------------------------------------------------------------
// helpers

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Per-process salt so that repeated runs over one kept store never reuse an id.
fn salt() -> u64 {
    static SALT: OnceLock<u64> = OnceLock::new();
    *SALT.get_or_init(|| {
        (now_us() as u64 ^ (u64::from(std::process::id()) << 20)) & 0xffff_ffff_ffff
    })
}

/// A unique lower-case 8-4-4-4-12 uuid from a namespace and a counter.
fn uuid(ns: u32, n: u64) -> String {
    let s = salt();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        ns,
        (s >> 32) & 0xffff,
        (s >> 16) & 0xffff,
        s & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// A one-shot record due at `due_ms` and its canonical id.
fn record(ns: u32, n: u64, due_ms: i64) -> (String, Record) {
    let id = DelayId {
        timestamp: due_ms,
        dtype: 2,
        expire: due_ms + EXPIRE_MS,
        times: 0,
        timed: 0,
        interval: 0,
        seq: 0,
        uuid: uuid(ns, n),
    };
    let canonical = id.to_string();
    let rec = Record {
        topic: "bench_delay".into(),
        tags: Some("bench".into()),
        properties: vec![("k".into(), "v".into())],
        body: vec![b'x'; BODY_LEN],
        id,
        next_index: 0,
        next_due_ms: due_ms,
        attempts: 0,
        first_failure_ms: 0,
        created_ms: now_ms(),
        owner: String::new(),
        caught_up: 0,
    };
    (canonical, rec)
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_mb() -> f64 {
    proc_status_kb("VmRSS:") as f64 / 1024.0
}

fn hwm_mb() -> f64 {
    proc_status_kb("VmHWM:") as f64 / 1024.0
}

/// User + system CPU seconds of this process (/proc/self/stat, CLK_TCK assumed 100).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// CPU seconds of this process's threads named `name` (/proc/self/task, CLK_TCK assumed 100).
fn thread_cpu_secs(name: &str) -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    rd.flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|e| {
            let s = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let rest = s.rsplit(')').next().unwrap_or("").to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (t(11) + t(12)) / 100.0
        })
        .sum()
}

fn dir_size_mb(p: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(p) as f64 / (1 << 20) as f64
}

/// Nearest-rank percentile of a sorted slice.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(sorted[i])
}

fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pproxy-schedbench-")
        .tempdir_in("/tmp")
        .expect("temp dir under /tmp")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// report: a human table and one JSON line

struct Report {
    mode: &'static str,
    rows: Vec<(String, String, String)>,
    json: Vec<(String, String)>,
}

impl Report {
    fn new(mode: &'static str) -> Self {
        Report {
            mode,
            rows: vec![],
            json: vec![],
        }
    }

    fn num(&mut self, key: &str, label: &str, v: Option<f64>, unit: &str, target: &str) {
        let (txt, js) = match v {
            Some(x) if x.is_finite() => {
                let t = if x.abs() >= 100.0 || x == x.trunc() {
                    format!("{x:.0}")
                } else {
                    format!("{x:.2}")
                };
                (format!("{t} {unit}"), format!("{x:.3}"))
            }
            _ => ("-".to_string(), "null".to_string()),
        };
        self.rows.push((label.to_string(), txt, target.to_string()));
        self.json.push((key.to_string(), js));
    }

    fn int(&mut self, key: &str, label: &str, v: u64, unit: &str) {
        self.rows
            .push((label.to_string(), format!("{v} {unit}"), String::new()));
        self.json.push((key.to_string(), v.to_string()));
    }

    fn text(&mut self, key: &str, label: &str, v: &str) {
        self.rows
            .push((label.to_string(), v.to_string(), String::new()));
        self.json.push((key.to_string(), format!("{v:?}")));
    }

    fn print(&self) {
        println!("\n== scheduler_bench {} ==", self.mode);
        println!("{:<40} {:>22}  target", "metric", "value");
        for (l, v, t) in &self.rows {
            println!("{l:<40} {v:>22}  {t}");
        }
        let mut j = format!("{{\"mode\":\"{}\"", self.mode);
        for (k, v) in &self.json {
            j.push_str(&format!(",\"{k}\":{v}"));
        }
        j.push('}');
        println!("{j}");
    }
}

// ---------------------------------------------------------------------------------------------
// sink

/// Answers `Delivered` at once and records (due ms, hand-off µs) per fire.
struct BenchSink {
    fires: Mutex<Vec<(i64, i64)>>,
    count: AtomicU64,
    first: OnceLock<Instant>,
}

impl BenchSink {
    fn new() -> Arc<BenchSink> {
        Arc::new(BenchSink {
            fires: Mutex::new(Vec::with_capacity(1 << 16)),
            count: AtomicU64::new(0),
            first: OnceLock::new(),
        })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn take(&self) -> Vec<(i64, i64)> {
        std::mem::take(&mut *self.fires.lock().unwrap())
    }
}

impl Sink for BenchSink {
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let handed = now_us();
        self.first.get_or_init(Instant::now);
        self.fires.lock().unwrap().push((m.due_ms, handed));
        self.count.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Outcome::Delivered))
    }
}

/// Lateness (hand-off − due) figures over the recorded fires; returns (sorted ms, early count).
fn lateness(fires: &[(i64, i64)]) -> (Vec<f64>, u64) {
    let mut v: Vec<f64> = fires
        .iter()
        .map(|(due, h)| (h - due * 1000) as f64 / 1000.0)
        .collect();
    let early = v.iter().filter(|x| **x < 0.0).count() as u64;
    sort(&mut v);
    (v, early)
}

fn lateness_rows(r: &mut Report, lat: &[f64], early: u64, p99_target: &str) {
    r.num("late_p50_ms", "lateness p50", pct(lat, 0.50), "ms", "");
    r.num(
        "late_p99_ms",
        "lateness p99",
        pct(lat, 0.99),
        "ms",
        p99_target,
    );
    r.num(
        "late_p999_ms",
        "lateness p99.9",
        pct(lat, 0.999),
        "ms",
        "<= 1000 ms (spec §6.7)",
    );
    r.num("late_max_ms", "lateness max", lat.last().copied(), "ms", "");
    r.int("early_fires", "fires before due (guarantee 2)", early, "");
}

fn engine_hist(r: &mut Report, s: &Scheduler) {
    let st = s.stats();
    let mut parts = vec![];
    for (i, b) in st.lateness.iter().enumerate() {
        let n = b.load(Ordering::Relaxed);
        if n > 0 {
            let label = LATENESS_BUCKETS_MS
                .get(i)
                .map_or("+inf".to_string(), |v| v.to_string());
            parts.push(format!("<={label}:{n}"));
        }
    }
    r.text(
        "engine_lateness_hist",
        "engine lateness histogram (ms)",
        &parts.join(" "),
    );
}

/// Committer counters at the start of a measured phase.
struct CommitSnap {
    groups: u64,
    mutations: u64,
    apply_us: u64,
    flush_us: u64,
    flushes: u64,
}

impl CommitSnap {
    fn take(s: &Scheduler) -> CommitSnap {
        let cs = s.commit_stats();
        CommitSnap {
            groups: cs.groups.load(Ordering::Relaxed),
            mutations: cs.mutations.load(Ordering::Relaxed),
            apply_us: cs.apply_us_sum.load(Ordering::Relaxed),
            flush_us: cs.flush_us_sum.load(Ordering::Relaxed),
            flushes: cs.flushes.load(Ordering::Relaxed),
        }
    }
}

fn commit_rows(r: &mut Report, s: &Scheduler, c0: &CommitSnap, secs: f64) {
    let cs = s.commit_stats();
    let groups = cs.groups.load(Ordering::Relaxed) - c0.groups;
    let muts = cs.mutations.load(Ordering::Relaxed) - c0.mutations;
    let apply_ms = (cs.apply_us_sum.load(Ordering::Relaxed) - c0.apply_us) as f64 / 1000.0;
    let flush_ms = (cs.flush_us_sum.load(Ordering::Relaxed) - c0.flush_us) as f64 / 1000.0;
    let flushes = cs.flushes.load(Ordering::Relaxed) - c0.flushes;
    r.int("flushes", "flushes", flushes, "");
    r.num(
        "apply_ms_per_group",
        "apply time / group",
        (groups > 0).then(|| apply_ms / groups as f64),
        "ms",
        "",
    );
    r.num(
        "flush_ms_per_flush",
        "flush time / flush",
        (flushes > 0).then(|| flush_ms / flushes as f64),
        "ms",
        "",
    );
    r.num(
        "committer_busy_pct",
        "committer busy (apply+flush) / wall",
        Some((apply_ms + flush_ms) / 10.0 / secs),
        "%",
        "",
    );
    r.int("commit_groups", "commit groups", groups, "");
    r.num(
        "mean_group_size",
        "mean group size",
        (groups > 0).then(|| muts as f64 / groups as f64),
        "mutations",
        "",
    );
    r.num(
        "mean_group_cycle_ms",
        "wall time / groups",
        (groups > 0).then(|| secs * 1000.0 / groups as f64),
        "ms",
        "",
    );
    r.num(
        "last_group_ms",
        "last group (apply+flush)",
        Some(cs.last_group_us.load(Ordering::Relaxed) as f64 / 1000.0),
        "ms",
        "",
    );
    r.int(
        "commit_errors",
        "commit errors",
        cs.errors.load(Ordering::Relaxed),
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// bulk load (child process)

struct LoadOut {
    loaded: u64,
    secs: f64,
    base_ms: i64,
}

/// `_load DIR PENDING OVERDUE SOON LIMIT_SECS`: writes `PENDING` records due 1-2 days ahead,
/// `OVERDUE` records due 10 s ago and `SOON` records due within one second starting at a base
/// chosen so that the parent can open a Scheduler first; applies LOAD_BATCH records per
/// transaction and flushes once at the end.
fn child_load(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let num = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (pending, overdue, soon, limit) = (num(1), num(2), num(3), num(4));
    let mut base_ms = 0;
    let store = Store::open_with(&dir, LOAD_CACHE, engine())
        .and_then(|s| s.db())
        .expect("open store");
    let started = Instant::now();
    let now = now_ms();
    if soon > 0 {
        // Calibrate the apply rate on a scratch store to pick a start time after the load.
        let scratch = tmpdir();
        let s = Store::open_with(scratch.path(), 64 << 20, engine())
            .and_then(|s| s.db())
            .expect("scratch store");
        let t = Instant::now();
        let cal: Vec<Mutation> = (0..LOAD_BATCH as u64)
            .map(|i| {
                let (id, rec) = record(NS_CAL, i, now + 3_600_000 + i as i64);
                Mutation::Add {
                    id,
                    record: Box::new(rec),
                }
            })
            .collect();
        s.apply_group(&cal.iter().collect::<Vec<_>>())
            .expect("apply");
        let per = t.elapsed().as_secs_f64() / LOAD_BATCH as f64;
        drop(s);
        // The calibration runs on an empty store; the real load slows down as the trees grow
        // and its final flush takes a while, hence the factor 3 and the floor of 50 µs per
        // record.
        let n = (pending + overdue + soon) as f64;
        let expect_ms = (per * n * 1000.0 * 3.0).max(n * 0.05) as i64;
        base_ms = now_ms() + 3000 + expect_ms;
    }
    let mut n = 0u64;
    let mut last_report = Instant::now();
    let mut stopped = false;
    // Records are applied LOAD_BATCH at a time, one transaction each (Store::apply_group, the
    // committer's own path), with no flush until the end.
    let mut batch: Vec<Mutation> = Vec::with_capacity(LOAD_BATCH);
    let apply = |batch: &mut Vec<Mutation>| {
        if !batch.is_empty() {
            store
                .apply_group(&batch.iter().collect::<Vec<_>>())
                .expect("apply");
            batch.clear();
        }
    };
    let mut put = |id: String, rec: Record, n: &mut u64| {
        batch.push(Mutation::Add {
            id,
            record: Box::new(rec),
        });
        if batch.len() >= LOAD_BATCH {
            apply(&mut batch);
        }
        *n += 1;
        if (*n).is_multiple_of(100_000) && last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprintln!("  load: {n} records in {s:.0} s ({:.0}/s)", *n as f64 / s);
        }
    };
    for i in 0..pending {
        if limit > 0 && i % 10_000 == 0 && started.elapsed().as_secs() >= limit {
            eprintln!("  load: stopped by limit={limit}s after {i} records");
            stopped = true;
            break;
        }
        // Evenly spread over the day after tomorrow, written in key order: both the `due` and
        // the `records` keys (ids start with the due time) then grow at the right edge, which
        // is what makes a 10M load fit in minutes.
        let due = now + 86_400_000 + (i as u128 * 86_400_000 / pending as u128) as i64;
        let (id, rec) = record(NS_BULK, i, due);
        put(id, rec, &mut n);
    }
    for i in 0..overdue {
        let (id, rec) = record(NS_OVERDUE, i, now - 10_000 - i as i64);
        put(id, rec, &mut n);
    }
    for i in 0..soon {
        let (id, rec) = record(NS_SOON, i, base_ms + (i * 1000 / soon) as i64);
        put(id, rec, &mut n);
    }
    apply(&mut batch);
    let applied = started.elapsed().as_secs_f64();
    let t = Instant::now();
    store.flush().expect("flush");
    let flush = t.elapsed().as_secs_f64();
    let secs = started.elapsed().as_secs_f64();
    drop(store);
    println!(
        "LOAD loaded={n} secs={secs:.3} apply_secs={applied:.3} final_flush_secs={flush:.3} rate={:.0} base_ms={base_ms} stopped={stopped} child_peak_rss_mb={:.0}",
        n as f64 / secs.max(1e-9),
        hwm_mb()
    );
}

/// Runs `_load` in a child process and parses its summary.
fn bulk_load(dir: &Path, pending: u64, overdue: u64, soon: u64, limit: u64) -> LoadOut {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("_load")
        .arg(dir)
        .args([pending, overdue, soon, limit].map(|v| v.to_string()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("run bulk-load child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bulk-load child failed: {text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("LOAD "))
        .expect("LOAD line")
        .to_string();
    println!(
        "{line}  (dir {} = {:.0} MB)",
        dir.display(),
        dir_size_mb(dir)
    );
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_default()
    };
    LoadOut {
        loaded: field("loaded").parse().unwrap_or(0),
        secs: field("secs").parse().unwrap_or(0.0),
        base_ms: field("base_ms").parse().unwrap_or(0),
    }
}

/// A store dir: `dir=PATH` (kept) or a temp dir (deleted on drop).
enum StoreDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl StoreDir {
    fn path(&self) -> &Path {
        match self {
            StoreDir::Kept(p) => p,
            StoreDir::Temp(t) => t.path(),
        }
    }
}

/// Whether `p` holds a store of either engine (redb's file, or sled's `conf` and `db`).
fn has_store(p: &Path) -> bool {
    p.join("store.redb").is_file() || (p.join("conf").is_file() && p.join("db").is_file())
}

// ---------------------------------------------------------------------------------------------
// modes

fn mode_adds(clients: usize, secs: f64) -> Report {
    let rt = runtime();
    let dir = tmpdir();
    let mut r = Report::new("adds");
    rt.block_on(async {
        let sink = BenchSink::new();
        let s = Scheduler::open(dir.path(), cfg(), sink.clone())
            .await
            .expect("open");
        let c0 = CommitSnap::take(&s);
        let cpu0 = cpu_secs();
        let ccpu0 = thread_cpu_secs("delay-commit");
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut tasks = vec![];
        for c in 0..clients {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut i = 0u64;
                while Instant::now() < end {
                    let due = now_ms() + 3_600_000 + (i % 1000) as i64;
                    let (id, rec) = record(NS_ADD, ((c as u64) << 32) | i, due);
                    let t = Instant::now();
                    let added = s.add(id, rec).await.expect("add");
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    assert!(added, "fresh id reported existing");
                    i += 1;
                }
                lat
            }));
        }
        let mut lat = vec![];
        for t in tasks {
            lat.extend(t.await.expect("client task"));
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let ccpu = thread_cpu_secs("delay-commit") - ccpu0;
        sort(&mut lat);
        r.int("clients", "concurrent clients", clients as u64, "");
        r.num("secs", "wall time", Some(wall), "s", "");
        r.int("adds", "durable adds", lat.len() as u64, "");
        r.num(
            "adds_per_s",
            "durable adds/s",
            Some(lat.len() as f64 / wall),
            "/s",
            "",
        );
        r.num("add_p50_ms", "add latency p50", pct(&lat, 0.5), "ms", "");
        r.num("add_p99_ms", "add latency p99", pct(&lat, 0.99), "ms", "");
        r.num(
            "add_p999_ms",
            "add latency p99.9",
            pct(&lat, 0.999),
            "ms",
            "",
        );
        r.num(
            "add_max_ms",
            "add latency max",
            lat.last().copied(),
            "ms",
            "",
        );
        commit_rows(&mut r, &s, &c0, wall);
        r.num(
            "cpu_pct",
            "process CPU (100% = 1 core)",
            Some(cpu / wall * 100.0),
            "%",
            "",
        );
        r.num(
            "committer_cpu_pct",
            "committer thread CPU",
            Some(ccpu / wall * 100.0),
            "%",
            "",
        );
        r.num("rss_mb", "RSS after", Some(rss_mb()), "MB", "");
        r.num(
            "store_mb",
            "store size on disk",
            Some(dir_size_mb(dir.path())),
            "MB",
            "",
        );
        s.shutdown(Duration::from_secs(5)).await;
    });
    drop(rt);
    r
}

fn mode_fires(pending: u64, rate: u64, secs: f64, dir: Option<&str>, limit: u64) -> Report {
    let mut r = Report::new("fires");
    let dir = prepare_dir(dir, pending, 0, limit, &mut r);
    let rt = runtime();
    rt.block_on(async {
        let rss0 = rss_mb();
        let sink = BenchSink::new();
        let t = Instant::now();
        let s = Scheduler::open(dir.path(), cfg(), sink.clone())
            .await
            .expect("open");
        let open_ms = t.elapsed().as_secs_f64() * 1000.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_open = rss_mb();
        let c0 = CommitSnap::take(&s);
        let cpu0 = cpu_secs();
        let ccpu0 = thread_cpu_secs("delay-commit");
        let add_lat = Arc::new(Mutex::new(Vec::<f64>::with_capacity(
            (rate as f64 * secs) as usize,
        )));
        let total = (rate as f64 * secs) as u64;
        let start = Instant::now();
        let mut issued = 0u64;
        let mut handles = Vec::with_capacity(total as usize);
        let mut last_due = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while issued < total {
            tick.tick().await;
            let target = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while issued < target {
                let due = now_ms() + 1000 + (issued % 1000) as i64;
                last_due = last_due.max(due);
                let (id, rec) = record(NS_ADD, issued, due);
                let (s, lat) = (s.clone(), add_lat.clone());
                handles.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = s.add(id, rec).await.is_ok();
                    lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                    ok
                }));
                issued += 1;
            }
        }
        let issue_secs = start.elapsed().as_secs_f64();
        let outstanding = handles.iter().filter(|h| !h.is_finished()).count() as u64;
        let mut added = 0u64;
        for h in handles {
            added += u64::from(h.await.unwrap_or(false));
        }
        let adds_done_secs = start.elapsed().as_secs_f64();
        // Wait for the remaining fires (bounded: 10 s after the last due time or the last
        // add answer, whichever is later; late adds are already overdue when answered).
        let wait_until = now_ms().max(last_due) + 10_000;
        while sink.count() < added && now_ms() < wait_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let ccpu = thread_cpu_secs("delay-commit") - ccpu0;
        let fires = sink.take();
        let (lat, early) = lateness(&fires);
        let first = fires.iter().map(|f| f.1).min().unwrap_or(0);
        let last = fires.iter().map(|f| f.1).max().unwrap_or(0);
        let fire_span = (last - first) as f64 / 1e6;
        let mut al = std::mem::take(&mut *add_lat.lock().unwrap());
        sort(&mut al);
        r.num("open_ms", "Scheduler::open", Some(open_ms), "ms", "");
        r.int("target_rate", "target add/fire rate", rate, "/s");
        r.num("issue_secs", "issue phase", Some(issue_secs), "s", "");
        r.int(
            "outstanding_at_issue_end",
            "adds unanswered at end of issue phase",
            outstanding,
            "",
        );
        r.int("added", "adds answered ok", added, "");
        r.num(
            "adds_per_s",
            "adds/s (answered, over issue+drain)",
            Some(added as f64 / adds_done_secs),
            "/s",
            "",
        );
        r.num("add_p50_ms", "add latency p50", pct(&al, 0.5), "ms", "");
        r.num("add_p99_ms", "add latency p99", pct(&al, 0.99), "ms", "");
        r.int("fired", "fired", fires.len() as u64, "");
        r.num(
            "fires_per_s",
            "fires/s (first..last hand-off)",
            (fire_span > 0.0).then(|| fires.len() as f64 / fire_span),
            "/s",
            ">= 10000 /s",
        );
        lateness_rows(&mut r, &lat, early, "<= 10 ms at 10k/s");
        engine_hist(&mut r, &s);
        commit_rows(&mut r, &s, &c0, wall);
        r.num(
            "cpu_pct",
            "process CPU (100% = 1 core)",
            Some(cpu / wall * 100.0),
            "%",
            "",
        );
        r.num(
            "committer_cpu_pct",
            "committer thread CPU",
            Some(ccpu / wall * 100.0),
            "%",
            "",
        );
        r.num("rss_before_mb", "RSS before open", Some(rss0), "MB", "");
        r.num("rss_open_mb", "RSS after open", Some(rss_open), "MB", "");
        r.num("rss_after_mb", "RSS after run", Some(rss_mb()), "MB", "");
        r.num("rss_peak_mb", "RSS peak (VmHWM)", Some(hwm_mb()), "MB", "");
        s.shutdown(Duration::from_secs(5)).await;
    });
    drop(rt);
    r
}

fn mode_maxfire(n: u64) -> Report {
    let dir = tmpdir();
    let mut r = Report::new("maxfire");
    let load = bulk_load(dir.path(), 0, 0, n, 0);
    let base = load.base_ms;
    let rt = runtime();
    rt.block_on(async {
        let sink = BenchSink::new();
        let s = Scheduler::open(dir.path(), cfg(), sink.clone())
            .await
            .expect("open");
        let lead_ms = base - now_ms();
        // Let the loader fill the wheel, then sample just before the first due time.
        while now_ms() < base - 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (loaded, _) = s.loaded_and_inflight();
        let c0 = CommitSnap::take(&s);
        let cpu0 = cpu_secs();
        let ccpu0 = thread_cpu_secs("delay-commit");
        let t0 = Instant::now();
        while sink.count() < n && t0.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let ccpu = thread_cpu_secs("delay-commit") - ccpu0;
        let fires = sink.take();
        let (lat, early) = lateness(&fires);
        let first = fires.iter().map(|f| f.1).min().unwrap_or(0);
        let last = fires.iter().map(|f| f.1).max().unwrap_or(0);
        let span = (last - first) as f64 / 1e6;
        let from_due = (last - base * 1000) as f64 / 1e6;
        r.int("n", "records due within 1 s", n, "");
        r.num("load_secs", "bulk load time", Some(load.secs), "s", "");
        r.num(
            "lead_ms",
            "time left before first due at open",
            Some(lead_ms as f64),
            "ms",
            "> 0",
        );
        r.int(
            "wheel_before_due",
            "in wheel just before first due",
            loaded as u64,
            "",
        );
        r.int("fired", "fired", fires.len() as u64, "");
        r.num(
            "all_fired_s",
            "first due -> last hand-off",
            Some(from_due),
            "s",
            "",
        );
        r.num(
            "fires_per_s",
            "fires/s (n / first due..last hand-off)",
            (from_due > 0.0).then(|| fires.len() as f64 / from_due),
            "/s",
            "",
        );
        r.num(
            "fires_per_s_span",
            "fires/s (first..last hand-off)",
            (span > 0.0).then(|| fires.len() as f64 / span),
            "/s",
            "",
        );
        lateness_rows(&mut r, &lat, early, "");
        commit_rows(&mut r, &s, &c0, wall);
        r.num(
            "cpu_pct",
            "process CPU (100% = 1 core)",
            Some(cpu / wall * 100.0),
            "%",
            "",
        );
        r.num(
            "committer_cpu_pct",
            "committer thread CPU",
            Some(ccpu / wall * 100.0),
            "%",
            "",
        );
        r.num("rss_mb", "RSS after", Some(rss_mb()), "MB", "");
        s.shutdown(Duration::from_secs(10)).await;
    });
    drop(rt);
    r
}

fn prepare_dir(
    dir: Option<&str>,
    pending: u64,
    overdue: u64,
    limit: u64,
    r: &mut Report,
) -> StoreDir {
    let d = match dir {
        Some(p) => StoreDir::Kept(PathBuf::from(p)),
        None => StoreDir::Temp(tmpdir()),
    };
    if has_store(d.path()) {
        r.text("store", "store (reused)", &d.path().display().to_string());
        if overdue > 0 {
            bulk_load(d.path(), 0, overdue, 0, 0);
        }
    } else {
        let load = bulk_load(d.path(), pending, overdue, 0, limit);
        r.int("loaded", "bulk-loaded records", load.loaded, "");
        r.num(
            "load_secs",
            "bulk load time (incl. 1 flush)",
            Some(load.secs),
            "s",
            "",
        );
        r.num(
            "load_per_s",
            "bulk load rate",
            Some(load.loaded as f64 / load.secs.max(1e-9)),
            "/s",
            "",
        );
    }
    r.num(
        "store_mb",
        "store size on disk",
        Some(dir_size_mb(d.path())),
        "MB",
        "",
    );
    d
}

fn mode_rss(pending: u64, dir: Option<&str>, limit: u64) -> Report {
    let mut r = Report::new("rss");
    let d = prepare_dir(dir, pending, 0, limit, &mut r);
    let rt = runtime();
    rt.block_on(async {
        let rss0 = rss_mb();
        let sink = BenchSink::new();
        let t = Instant::now();
        let s = Scheduler::open(d.path(), cfg(), sink.clone())
            .await
            .expect("open");
        let open_ms = t.elapsed().as_secs_f64() * 1000.0;
        let rss_open = rss_mb();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pending_now = s.stats().pending.load(Ordering::Relaxed);
        let (loaded, inflight) = s.loaded_and_inflight();
        r.int(
            "pending",
            "pending records (stats)",
            pending_now.max(0) as u64,
            "",
        );
        r.num("open_ms", "Scheduler::open", Some(open_ms), "ms", "");
        r.int(
            "wheel",
            "in wheel / in flight",
            loaded as u64,
            &format!("/ {inflight}"),
        );
        r.num("rss_before_mb", "RSS before open", Some(rss0), "MB", "");
        r.num(
            "rss_open_mb",
            "RSS right after open",
            Some(rss_open),
            "MB",
            "",
        );
        r.num(
            "rss_mb",
            "RSS 3 s after open",
            Some(rss_mb()),
            "MB",
            "<= 300 MB at 10M",
        );
        r.num("rss_peak_mb", "RSS peak (VmHWM)", Some(hwm_mb()), "MB", "");
        s.shutdown(Duration::from_secs(5)).await;
    });
    drop(rt);
    r
}

fn mode_restart(pending: u64, dir: Option<&str>, limit: u64) -> Report {
    const OVERDUE: u64 = 1000;
    let mut r = Report::new("restart");
    let d = prepare_dir(dir, pending, OVERDUE, limit, &mut r);
    let rt = runtime();
    rt.block_on(async {
        let sink = BenchSink::new();
        let t0 = Instant::now();
        let s = Scheduler::open(d.path(), cfg(), sink.clone())
            .await
            .expect("open");
        let open_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let pending_at_open = s.stats().pending.load(Ordering::Relaxed).max(0) as u64;
        while sink.first.get().is_none() && t0.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let first_ms = sink
            .first
            .get()
            .map(|t| t.duration_since(t0).as_secs_f64() * 1000.0);
        while sink.count() < OVERDUE && t0.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let all_ms = t0.elapsed().as_secs_f64() * 1000.0;
        r.int(
            "pending",
            "pending records at open (stats)",
            pending_at_open,
            "",
        );
        r.num(
            "open_ms",
            "Scheduler::open returned",
            Some(open_ms),
            "ms",
            "",
        );
        r.num(
            "first_fire_ms",
            "open start -> first fire at sink",
            first_ms,
            "ms",
            "<= 3000 ms",
        );
        r.int(
            "overdue_fired",
            "overdue fired",
            sink.count(),
            &format!("of {OVERDUE}"),
        );
        r.num(
            "all_overdue_ms",
            "open start -> all overdue fired",
            Some(all_ms),
            "ms",
            "",
        );
        r.num("rss_mb", "RSS after", Some(rss_mb()), "MB", "");
        s.shutdown(Duration::from_secs(10)).await;
    });
    drop(rt);
    r
}

/// Cost of Store::apply and Store::flush for groups of 1, 64 and 1024 adds.
fn mode_flush(reps: u64) -> Report {
    let dir = tmpdir();
    let store = Store::open_with(dir.path(), 128 << 20, engine())
        .and_then(|s| s.db())
        .expect("open store");
    let mut r = Report::new("flush");
    let now = now_ms();
    let mut n = 0u64;
    for size in [1u64, 64, 1024] {
        let reps = if size == 1024 { reps.div_ceil(4) } else { reps };
        let (mut apply, mut flush) = (vec![], vec![]);
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..size {
                let (id, rec) = record(NS_ADD, n, now + 3_600_000 + (n % 1000) as i64);
                store
                    .apply(&Mutation::Add {
                        id,
                        record: Box::new(rec),
                    })
                    .expect("apply");
                n += 1;
            }
            apply.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            store.flush().expect("flush");
            flush.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        sort(&mut apply);
        sort(&mut flush);
        let k = format!("g{size}");
        r.num(
            &format!("{k}_apply_p50_ms"),
            &format!("group {size}: apply p50"),
            pct(&apply, 0.5),
            "ms",
            "",
        );
        r.num(
            &format!("{k}_flush_p50_ms"),
            &format!("group {size}: flush p50"),
            pct(&flush, 0.5),
            "ms",
            "",
        );
        r.num(
            &format!("{k}_flush_p99_ms"),
            &format!("group {size}: flush p99"),
            pct(&flush, 0.99),
            "ms",
            "",
        );
        r.num(
            &format!("{k}_flush_max_ms"),
            &format!("group {size}: flush max"),
            flush.last().copied(),
            "ms",
            "",
        );
    }
    r
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // cargo bench appends `--bench`; anything starting with "--" is cargo's.
    let all: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = all.first().cloned().unwrap_or_else(|| "smoke".into());
    if mode == "_load" {
        child_load(&all[1..]);
        return;
    }
    let opt = |k: &str| {
        all.iter()
            .find_map(|a| a.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    let pos: Vec<&String> = all[1.min(all.len())..]
        .iter()
        .filter(|a| !a.contains('='))
        .collect();
    let num = |i: usize, d: f64| pos.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    if let Some(e) = opt("engine") {
        if EngineKind::parse(&e).is_none() {
            eprintln!("engine={e}: expected sled or redb");
            std::process::exit(2);
        }
        // Read by `engine()` here and in the bulk-loading children.
        std::env::set_var("SCHED_ENGINE", e);
    }
    eprintln!("scheduler_bench: engine {}", engine().name());
    let dir = opt("dir");
    let limit = opt("limit").and_then(|v| v.parse().ok()).unwrap_or(0);
    let t = Instant::now();
    let reports = match mode.as_str() {
        "adds" => vec![mode_adds(num(0, 64.0) as usize, num(1, 10.0))],
        "fires" => vec![mode_fires(
            num(0, 1e6) as u64,
            num(1, 1e4) as u64,
            num(2, 20.0),
            dir.as_deref(),
            limit,
        )],
        "maxfire" => vec![mode_maxfire(num(0, 2e5) as u64)],
        "rss" => vec![mode_rss(num(0, 1e7) as u64, dir.as_deref(), limit)],
        "restart" => vec![mode_restart(num(0, 1e7) as u64, dir.as_deref(), limit)],
        "flush" => vec![mode_flush(num(0, 100.0) as u64)],
        "smoke" => vec![
            mode_adds(8, 1.0),
            mode_fires(2000, 500, 1.0, None, 0),
            mode_maxfire(2000),
            mode_rss(2000, None, 0),
            mode_restart(2000, None, 0),
            mode_flush(5),
        ],
        other => {
            eprintln!("unknown mode {other:?}; modes: smoke adds fires maxfire rss restart flush");
            std::process::exit(2);
        }
    };
    for r in &reports {
        r.print();
    }
    eprintln!("scheduler_bench {mode}: {:.1} s", t.elapsed().as_secs_f64());
}
