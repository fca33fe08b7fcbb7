//! Load generator for pproxy and for the direct producers it is compared with (issue #5).
//!
//! One binary drives every side of a comparison with the same scheduling, histograms and
//! summary, so a ratio compares the system under test and nothing else:
//!
//! ```text
//! loadgen proxy           --addr 127.0.0.1:9613 --topic T --conns 64 --size 100 --method sync
//! loadgen direct-kafka    --bootstrap 127.0.0.1:9092 --topic T --conns 64 --size 100
//! loadgen direct-rocketmq --namesrv 127.0.0.1:9876 --topic T --conns 64 --size 100
//! loadgen proxy           --tls-ca ca.pem ...        (TLS; --fresh-connections: one per call)
//! ```
//!
//! `--rate 0` (default) is closed-loop maximum rate: every connection sends its next call as
//! soon as the previous one is answered. `--rate N` offers N messages/s on one timeline shared
//! by all connections; each call's latency is measured from its scheduled time, so a stalled
//! server is charged for the calls it delayed (no coordinated omission), and at most `--conns`
//! calls are in flight. The service time (from the actual start of the call) is reported too.
//!
//! A progress line goes to stderr once per second; the JSON summary goes to stdout and, with
//! `--json FILE`, to FILE. Only calls answered inside the measurement window (after `--warmup`)
//! count. Exit status 3 when no message succeeded in the window.

#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use pproxy_wire::client::{Client, ClientError};
use pproxy_wire::types::Reply;
use pproxy_wire::{Call, DelayMessage, Message, Protocol};
#[cfg(feature = "kafka")]
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
#[cfg(feature = "kafka")]
use rdkafka::ClientConfig;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator: pproxy or a direct producer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Thrift connections to a pproxy.
    Proxy(ProxyArgs),
    /// One rdkafka producer shared by `--conns` senders (the producer pproxy itself uses).
    #[cfg(feature = "kafka")]
    DirectKafka(KafkaArgs),
    /// One rocketmq-client-rust producer shared by `--conns` senders.
    #[cfg(feature = "rocketmq")]
    DirectRocketmq(RmqArgs),
}

#[derive(Args)]
struct ProxyArgs {
    /// pproxy's Thrift address.
    #[arg(long, default_value = "127.0.0.1:9613")]
    addr: String,
    #[arg(long, value_enum, default_value_t = Proto::Compact)]
    protocol: Proto,
    /// sendDelaySync: due time from now, ms (the default fires after a typical run).
    #[arg(long, default_value_t = 60_000)]
    delay_ms: i64,
    /// CPU of this process (pproxy) is measured over the window.
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// Speak TLS, trusting the CA certificates in this PEM file.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Server name checked against the certificate (with `--tls-ca`).
    #[arg(long, default_value = "127.0.0.1")]
    tls_name: String,
    /// Open a new connection for every call (measures connection setup: TCP, or TCP + TLS).
    #[arg(long)]
    fresh_connections: bool,
    #[command(flatten)]
    common: Common,
}

/// How a proxy connection is opened.
#[derive(Clone)]
struct Dial {
    addr: String,
    protocol: Protocol,
    tls: Option<(tokio_rustls::TlsConnector, String)>,
    fresh: bool,
}

impl Dial {
    fn of(a: &ProxyArgs) -> Dial {
        let protocol = match a.protocol {
            Proto::Compact => Protocol::Compact,
            Proto::Binary => Protocol::Binary,
        };
        let tls = a.tls_ca.as_ref().map(|ca| {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .unwrap_or_else(|e| {
                    eprintln!("loadgen: {}: {e}", ca.display());
                    std::process::exit(2)
                });
            for c in certs {
                let _ = roots.add(c);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|e| {
                    eprintln!("loadgen: TLS: {e}");
                    std::process::exit(2)
                });
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            (connector, a.tls_name.clone())
        });
        Dial {
            addr: a.addr.clone(),
            protocol,
            tls,
            fresh: a.fresh_connections,
        }
    }

    async fn connect(&self, t: Duration) -> Result<Client, ClientError> {
        match &self.tls {
            None => Client::connect(&self.addr, self.protocol, t).await,
            Some((c, name)) => Client::connect_tls(&self.addr, self.protocol, t, c, name).await,
        }
    }
}

#[cfg(feature = "kafka")]
#[derive(Args)]
struct KafkaArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(flatten)]
    common: Common,
}

#[cfg(feature = "rocketmq")]
#[derive(Args)]
struct RmqArgs {
    #[arg(long, default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long)]
    topic: String,
    /// Concurrent connections (proxy) or senders sharing one producer (direct).
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Body size, bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per second over all connections; 0 = as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds sent but not counted first (connections, metadata, JIT of the broker).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Direct peers support `sync` (and Kafka `batch`).
    #[arg(long, value_enum, default_value_t = Method::Sync)]
    method: Method,
    /// Messages per sendBatchSync call.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// explicit: partition = connection index; hash: random hashId; random: partitionId -2.
    #[arg(long, value_enum, default_value_t = PartitionMode::Random)]
    partition: PartitionMode,
    /// Per-call timeout, ms (also the sendSync timeout argument).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Write the summary here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Free text copied into the summary.
    #[arg(long, default_value = "")]
    label: String,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// The broker's processes (repeatable): their CPU over the window is reported as `broker_cpu`.
    #[arg(long)]
    broker_pid: Vec<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Compact,
    Binary,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Method {
    Sync,
    Async,
    Batch,
    Delay,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum PartitionMode {
    Explicit,
    Hash,
    Random,
}

fn name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// What every sender needs to build its calls.
struct Ctx {
    topic: String,
    body: Bytes,
    method: Method,
    batch: usize,
    partition: PartitionMode,
    timeout_ms: u64,
    delay_ms: i64,
}

impl Ctx {
    fn msgs_per_call(&self) -> u64 {
        if self.method == Method::Batch {
            self.batch as u64
        } else {
            1
        }
    }
}

/// Index among `n` partitions/queues, chosen as pproxy chooses for the same partition mode.
#[cfg(any(feature = "kafka", feature = "rocketmq"))]
fn pick_index(mode: PartitionMode, conn: usize, n: usize) -> usize {
    let n = n.max(1);
    match mode {
        PartitionMode::Explicit => conn % n,
        PartitionMode::Hash | PartitionMode::Random => rand::random_range(0..n),
    }
}

/// The system under test, one per sender.
enum Peer {
    Proxy {
        client: Option<Client>,
        dial: Arc<Dial>,
        key: String,
    },
    #[cfg(feature = "kafka")]
    Kafka {
        producer: FutureProducer,
        partitions: usize,
        key: String,
    },
    #[cfg(feature = "rocketmq")]
    Rmq {
        producer: Arc<rocketmq_client_rust::DefaultMQProducer>,
        queues: Arc<Vec<rocketmq_model::common::message::message_queue::MessageQueue>>,
        key: String,
    },
}

fn client_error_key(e: &ClientError) -> String {
    match e {
        ClientError::Io(_) => "io".into(),
        ClientError::Timeout => "timeout".into(),
        ClientError::Decode(_) => "decode".into(),
    }
}

impl Peer {
    /// One call; Ok(messages stored) or Err(error class for the summary).
    async fn send(&mut self, ctx: &Ctx, conn: usize) -> Result<u64, String> {
        match self {
            Peer::Proxy { client, dial, key } => {
                if dial.fresh {
                    *client = None;
                }
                if client.is_none() {
                    let t = Duration::from_millis(ctx.timeout_ms + 2000);
                    match dial.connect(t).await {
                        Ok(c) => *client = Some(c),
                        Err(_) => {
                            // Don't spin on a dead proxy.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            return Err("connect".into());
                        }
                    }
                }
                let call = proxy_call(ctx, conn, key);
                let c = client.as_mut().expect("connected");
                match c.call(&call).await {
                    Ok(Reply::Result { code: 0, .. }) => Ok(ctx.msgs_per_call()),
                    Ok(Reply::Result { code, .. }) => Err(format!("code:{code}")),
                    Ok(Reply::Exception { kind, .. }) => Err(format!("exception:{kind}")),
                    Err(e) => {
                        // A late reply would pair with the next call: start a new connection.
                        *client = None;
                        Err(client_error_key(&e))
                    }
                }
            }
            #[cfg(feature = "kafka")]
            Peer::Kafka {
                producer,
                partitions,
                key,
            } => {
                let t = Duration::from_millis(ctx.timeout_ms);
                let n = ctx.msgs_per_call() as usize;
                // Submitted in order, then all awaited: what pproxy does for a batch.
                let sends = (0..n).map(|_| {
                    let p = pick_index(ctx.partition, conn, *partitions) as i32;
                    let r = FutureRecord::to(&ctx.topic)
                        .payload(&ctx.body[..])
                        .key(key.as_str())
                        .partition(p);
                    producer.send(r, t)
                });
                let mut err = None;
                for r in futures::future::join_all(sends).await {
                    if let Err((e, _)) = r {
                        err.get_or_insert_with(|| match e.rdkafka_error_code() {
                            Some(c) => format!("kafka:{c:?}"),
                            None => "kafka:other".into(),
                        });
                    }
                }
                err.map_or(Ok(n as u64), Err)
            }
            #[cfg(feature = "rocketmq")]
            Peer::Rmq {
                producer,
                queues,
                key,
            } => {
                use rocketmq_model::common::message::message_single::Message as RMessage;
                let m = RMessage::builder()
                    .topic(ctx.topic.as_str())
                    .key(key.as_str())
                    .body(ctx.body.clone())
                    .build_unchecked();
                let q = queues[pick_index(ctx.partition, conn, queues.len())].clone();
                match producer
                    .send_to_queue_with_timeout(m, q, ctx.timeout_ms)
                    .await
                {
                    Ok(_) => Ok(1),
                    Err(e) => {
                        // The error's first words classify it; the rest varies per message.
                        let s = e.to_string();
                        Err(format!(
                            "rmq:{}",
                            s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
                        ))
                    }
                }
            }
        }
    }
}

fn proxy_message(ctx: &Ctx, conn: usize, key: &str) -> Message {
    let (partition_id, hash_id) = match ctx.partition {
        PartitionMode::Explicit => (conn as i32, 0),
        PartitionMode::Hash => (-1, rand::random::<i64>()),
        PartitionMode::Random => (-2, 0),
    };
    Message {
        topic: Some(ctx.topic.clone()),
        key: Some(key.to_string()),
        body: Some(ctx.body.clone()),
        partition_id,
        hash_id,
        ..Default::default()
    }
}

fn proxy_call(ctx: &Ctx, conn: usize, key: &str) -> Call {
    let timeout = ctx.timeout_ms as i64;
    match ctx.method {
        Method::Sync => Call::SendSync(Some(proxy_message(ctx, conn, key)), timeout),
        Method::Async => Call::SendAsync(Some(proxy_message(ctx, conn, key))),
        Method::Batch => Call::SendBatchSync(
            (0..ctx.batch)
                .map(|_| proxy_message(ctx, conn, key))
                .collect(),
        ),
        Method::Delay => Call::SendDelaySync(
            Some(DelayMessage {
                topic: Some(ctx.topic.clone()),
                body: Some(ctx.body.clone()),
                action: 1,
                dmsgtype: 2,
                timestamp: chrono::Utc::now().timestamp_millis() + ctx.delay_ms,
                ..Default::default()
            }),
            timeout,
        ),
    }
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; longer values saturate at the top.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// One sender's figures; the progress line reads and resets the interval part.
struct Stats {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    ok_msgs: u64,
    ok_calls: u64,
    errors: BTreeMap<String, u64>,
    behind_max: Duration,
    interval: Histogram<u64>,
    interval_msgs: u64,
    interval_errors: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: hist(),
            service: hist(),
            ok_msgs: 0,
            ok_calls: 0,
            errors: BTreeMap::new(),
            behind_max: Duration::ZERO,
            interval: hist(),
            interval_msgs: 0,
            interval_errors: 0,
        }
    }
}

/// The shared timeline.
struct Shared {
    t0: Instant,
    /// Measurement window [start, end).
    start: Instant,
    end: Instant,
    /// Fixed-rate mode: seconds between two consecutive calls (over all senders).
    call_gap: Option<f64>,
    next: AtomicU64,
}

async fn sender(
    mut peer: Peer,
    ctx: Arc<Ctx>,
    sh: Arc<Shared>,
    st: Arc<Mutex<Stats>>,
    conn: usize,
) {
    loop {
        let intended = match sh.call_gap {
            Some(gap) => {
                let i = sh.next.fetch_add(1, Ordering::Relaxed);
                let t = sh.t0 + Duration::from_secs_f64(i as f64 * gap);
                if t >= sh.end {
                    break;
                }
                tokio::time::sleep_until(t.into()).await;
                t
            }
            None => {
                let now = Instant::now();
                if now >= sh.end {
                    break;
                }
                now
            }
        };
        let begin = Instant::now();
        let r = peer.send(&ctx, conn).await;
        let done = Instant::now();
        let in_window = done >= sh.start && done < sh.end;
        let mut s = st.lock().expect("stats");
        match r {
            Ok(n) => {
                s.interval_msgs += n;
                let _ = s.interval.record(micros(done - intended).max(1));
                if in_window {
                    s.ok_msgs += n;
                    s.ok_calls += 1;
                    s.latency.saturating_record(micros(done - intended).max(1));
                    s.service.saturating_record(micros(done - begin).max(1));
                    s.behind_max = s.behind_max.max(begin - intended);
                }
            }
            Err(k) => {
                s.interval_errors += 1;
                if in_window {
                    *s.errors.entry(k).or_default() += 1;
                }
            }
        }
    }
}

/// CPU seconds of the whole machine (all cores) since boot: busy (everything but idle, iowait
/// and steal) and steal (taken by the hypervisor: a shared VM's noise).
fn machine_secs() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user and nice).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    let steal = *f.get(7)?;
    Some((busy as f64 / clk_tck(), steal as f64 / clk_tck()))
}

/// Summed CPU seconds of `pids`, if every one of them was readable.
fn cpu_secs_all(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

/// Per thread name: CPU seconds and context switches (voluntary, involuntary), summed over the
/// process's threads of that name (digits dropped, so `rdk:broker1` and `rdk:broker2` group).
type Threads = BTreeMap<String, (f64, u64, u64)>;

/// The threads of `pid` by name (see [`Threads`]).
fn thread_stats(pid: u32) -> Option<Threads> {
    let mut out = Threads::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let dir = t.path();
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let Some((comm, secs)) = parse_stat(&stat) else {
            continue;
        };
        let name: String = comm.chars().filter(|c| !c.is_ascii_digit()).collect();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let e = out.entry(name).or_default();
        e.0 += secs;
        e.1 += field("voluntary_ctxt_switches:");
        e.2 += field("nonvoluntary_ctxt_switches:");
    }
    Some(out)
}

/// Per thread name over the window: CPU µs and context switches per stored message.
fn threads_json(a: Option<Threads>, b: Option<Threads>, msgs: u64) -> Value {
    let (Some(a), Some(b)) = (a, b) else {
        return Value::Null;
    };
    let per = |x: f64| (x / msgs.max(1) as f64 * 1000.0).round() / 1000.0;
    let mut out = serde_json::Map::new();
    for (name, (cb, vb, nb)) in b {
        let (ca, va, na) = a.get(&name).copied().unwrap_or_default();
        if cb - ca <= 0.0 && vb == va && nb == na {
            continue;
        }
        out.insert(
            name,
            json!({
                "us_per_msg": (per((cb - ca) * 1e6) * 100.0).round() / 100.0,
                "switches_per_msg": per((vb - va + nb - na) as f64),
                "involuntary_per_msg": per((nb - na) as f64),
            }),
        );
    }
    Value::Object(out)
}

/// Clock ticks per second of the CPU times in /proc.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The command name and utime + stime (seconds) of a /proc `stat` line, process or thread.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    // Fields after the command name, which may itself hold spaces or parentheses.
    let (head, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((head.split_once('(')?.1, ticks as f64 / clk_tck()))
}

/// utime + stime of a process, seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s).map(|(_, secs)| secs)
}

fn pct(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}ms", us as f64 / 1000.0)
    }
}

/// Runs the senders over the timeline and builds the summary.
async fn run(mode: &str, peers: Vec<Peer>, ctx: Ctx, c: &Common, proxy_pid: Option<u32>) -> Value {
    let ctx = Arc::new(ctx);
    let t0 = Instant::now() + Duration::from_millis(50);
    let start = t0 + Duration::from_secs_f64(c.warmup);
    let end = start + Duration::from_secs_f64(c.secs);
    let call_gap = (c.rate > 0.0).then(|| ctx.msgs_per_call() as f64 / c.rate);
    let sh = Arc::new(Shared {
        t0,
        start,
        end,
        call_gap,
        next: AtomicU64::new(0),
    });
    let stats: Vec<Arc<Mutex<Stats>>> = (0..peers.len())
        .map(|_| Arc::new(Mutex::new(Stats::new())))
        .collect();
    let mut tasks = Vec::new();
    for (conn, peer) in peers.into_iter().enumerate() {
        tasks.push(tokio::spawn(sender(
            peer,
            ctx.clone(),
            sh.clone(),
            stats[conn].clone(),
            conn,
        )));
    }
    let me = std::process::id();
    let brokers = c.broker_pid.clone();
    let cpu = tokio::spawn(async move {
        let sample = || {
            (
                (
                    proxy_pid.and_then(cpu_secs),
                    proxy_pid.and_then(thread_stats),
                ),
                (cpu_secs(me), thread_stats(me)),
                cpu_secs_all(&brokers),
                machine_secs(),
            )
        };
        tokio::time::sleep_until(start.into()).await;
        let a = sample();
        tokio::time::sleep_until(end.into()).await;
        (a, sample())
    });

    let tag = format!("loadgen[{mode} {}]", name(ctx.method));
    let mut tick =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut second = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        second += 1;
        if c.quiet {
            continue;
        }
        let (mut msgs, mut errs, mut h) = (0, 0, hist());
        for s in &stats {
            let mut s = s.lock().expect("stats");
            msgs += s.interval_msgs;
            errs += s.interval_errors;
            let _ = h.add(&s.interval);
            s.interval.reset();
            s.interval_msgs = 0;
            s.interval_errors = 0;
        }
        let phase = if Instant::now() <= start {
            " (warmup)"
        } else {
            ""
        };
        eprintln!(
            "{tag} {second:>3}s {msgs:>8} msg/s  err {errs:<5} p50 {} p99 {} max {}{phase}",
            fmt_us(h.value_at_quantile(0.5)),
            fmt_us(h.value_at_quantile(0.99)),
            fmt_us(h.max()),
        );
    }
    // Calls still in flight answer or time out; the window is already closed.
    let grace = Duration::from_millis(c.timeout_ms + 3000);
    for t in tasks {
        let _ = tokio::time::timeout(grace, t).await;
    }
    let (((pa, pta), (sa, sta), ba, ma), ((pb, ptb), (sb, stb), bb, mb)) =
        cpu.await.expect("cpu sampler");

    let mut latency = hist();
    let mut service = hist();
    let (mut ok_msgs, mut ok_calls) = (0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut behind = Duration::ZERO;
    for s in &stats {
        let s = s.lock().expect("stats");
        let _ = latency.add(&s.latency);
        let _ = service.add(&s.service);
        ok_msgs += s.ok_msgs;
        ok_calls += s.ok_calls;
        behind = behind.max(s.behind_max);
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let window = c.secs;
    let cpu_json = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => {
            let s = b - a;
            json!({
                "cpu_s": (s * 1000.0).round() / 1000.0,
                "cores": (s / window * 1000.0).round() / 1000.0,
                "us_per_msg": if ok_msgs > 0 { (s * 1e6 / ok_msgs as f64 * 100.0).round() / 100.0 } else { 0.0 },
            })
        }
        _ => Value::Null,
    };
    let mut proxy_cpu = cpu_json(pa, pb);
    if let (Some(pid), Some(o)) = (proxy_pid, proxy_cpu.as_object_mut()) {
        o.insert("pid".into(), json!(pid));
    }
    json!({
        "tool": "loadgen",
        "mode": mode,
        "label": c.label,
        "topic": ctx.topic,
        "method": name(ctx.method),
        "partition": name(ctx.partition),
        "conns": c.conns,
        "size": c.size,
        "batch": ctx.msgs_per_call(),
        "rate_target": c.rate,
        "secs": c.secs,
        "warmup": c.warmup,
        "ok_msgs": ok_msgs,
        "ok_calls": ok_calls,
        "errors_total": errors.values().sum::<u64>(),
        "errors": errors,
        "throughput": (ok_msgs as f64 / window * 10.0).round() / 10.0,
        "calls_per_s": (ok_calls as f64 / window * 10.0).round() / 10.0,
        "latency_us": pct(&latency),
        "service_us": pct(&service),
        "behind_max_us": micros(behind),
        "proxy_cpu": proxy_cpu,
        "self_cpu": cpu_json(sa, sb),
        "broker_cpu": cpu_json(ba, bb),
        "proxy_threads": threads_json(pta, ptb, ok_msgs),
        "self_threads": threads_json(sta, stb, ok_msgs),
        "machine_cpu": cpu_json(ma.map(|m| m.0), mb.map(|m| m.0)),
        "steal_cpu": cpu_json(ma.map(|m| m.1), mb.map(|m| m.1)),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    })
}

fn check(c: &Common, allowed: &[Method], mode: &str) {
    if !allowed.contains(&c.method) {
        eprintln!(
            "loadgen: {mode} does not support --method {}",
            name(c.method)
        );
        std::process::exit(2);
    }
    if c.conns == 0 || c.secs <= 0.0 || c.rate < 0.0 || c.batch == 0 {
        eprintln!("loadgen: --conns, --secs and --batch must be positive, --rate >= 0");
        std::process::exit(2);
    }
}

fn ctx_of(c: &Common, delay_ms: i64) -> Ctx {
    Ctx {
        topic: c.topic.clone(),
        body: Bytes::from(vec![b'x'; c.size]),
        method: c.method,
        batch: c.batch,
        partition: c.partition,
        timeout_ms: c.timeout_ms,
        delay_ms,
    }
}

async fn proxy_peers(a: &ProxyArgs) -> Vec<Peer> {
    let dial = Arc::new(Dial::of(a));
    let t = Duration::from_millis(a.common.timeout_ms + 2000);
    // All connections exist before the clock starts.
    let conns = futures::future::join_all((0..a.common.conns).map(|_| dial.connect(t))).await;
    conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| Peer::Proxy {
            client: Some(c.unwrap_or_else(|e| {
                eprintln!("loadgen: connect {}: {e}", a.addr);
                std::process::exit(2)
            })),
            dial: dial.clone(),
            key: format!("k{i}"),
        })
        .collect()
}

#[cfg(feature = "kafka")]
async fn kafka_peers(a: &KafkaArgs) -> Vec<Peer> {
    // The settings pproxy gives its own producer (acks=all, idempotent, linger 0, no
    // compression), so the ceiling is the same client with the same guarantees.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("compression.type", "none")
        .create()
        .expect("kafka producer");
    let (p, topic) = (producer.clone(), a.common.topic.clone());
    let md = tokio::task::spawn_blocking(move || {
        p.client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
    })
    .await
    .expect("metadata task");
    let partitions = match md {
        Ok(md) => md.topics().first().map_or(0, |t| t.partitions().len()),
        Err(e) => {
            eprintln!("loadgen: metadata of {}: {e}", a.common.topic);
            std::process::exit(2)
        }
    };
    if partitions == 0 {
        eprintln!("loadgen: topic {} has no partitions", a.common.topic);
        std::process::exit(2);
    }
    (0..a.common.conns)
        .map(|i| Peer::Kafka {
            producer: producer.clone(),
            partitions,
            key: format!("k{i}"),
        })
        .collect()
}

#[cfg(feature = "rocketmq")]
static RMQ_OWNER: std::sync::LazyLock<rocketmq_runtime::RuntimeOwner> =
    std::sync::LazyLock::new(|| {
        rocketmq_runtime::RuntimeOwner::plan(rocketmq_runtime::RuntimeConfig {
            thread_name: "rmq-direct".into(),
            ..Default::default()
        })
        .expect("plan")
        .build()
        .expect("runtime")
    });

#[cfg(feature = "rocketmq")]
async fn rmq_peers(a: &RmqArgs) -> Vec<Peer> {
    use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig, DefaultMQProducer};
    let rt = ClientRuntime::try_new(
        RMQ_OWNER.root_context().component("direct"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::noop(),
    )
    .expect("client runtime");
    // No retries: pproxy's figure is one attempt per answered call too.
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group(format!("loadgen_{}", uuid::Uuid::new_v4().simple()))
        .name_server_addr(a.namesrv.clone())
        .retry_times_when_send_failed(0)
        .build();
    p.start().await.expect("start rocketmq producer");
    let queues = match p.fetch_publish_message_queues(&a.common.topic).await {
        Ok(q) if !q.is_empty() => Arc::new(q),
        other => {
            eprintln!(
                "loadgen: route of {}: {:?}",
                a.common.topic,
                other.map(|q| q.len())
            );
            std::process::exit(2)
        }
    };
    let p = Arc::new(p);
    (0..a.common.conns)
        .map(|i| Peer::Rmq {
            producer: p.clone(),
            queues: queues.clone(),
            key: format!("k{i}"),
        })
        .collect()
}

fn finish(summary: Value, c: &Common) {
    let text = serde_json::to_string_pretty(&summary).expect("json");
    println!("{text}");
    if let Some(path) = &c.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, text + "\n").expect("write --json file");
    }
    if summary["ok_msgs"].as_u64() == Some(0) {
        std::process::exit(3);
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Proxy(a) => {
            let all = [Method::Sync, Method::Async, Method::Batch, Method::Delay];
            check(&a.common, &all, "proxy");
            let peers = proxy_peers(&a).await;
            let s = run(
                "proxy",
                peers,
                ctx_of(&a.common, a.delay_ms),
                &a.common,
                a.proxy_pid,
            )
            .await;
            finish(s, &a.common);
        }
        #[cfg(feature = "kafka")]
        Cmd::DirectKafka(a) => {
            check(&a.common, &[Method::Sync, Method::Batch], "direct-kafka");
            let peers = kafka_peers(&a).await;
            let s = run("direct-kafka", peers, ctx_of(&a.common, 0), &a.common, None).await;
            finish(s, &a.common);
        }
        #[cfg(feature = "rocketmq")]
        Cmd::DirectRocketmq(a) => {
            check(&a.common, &[Method::Sync], "direct-rocketmq");
            let peers = rmq_peers(&a).await;
            let s = run(
                "direct-rocketmq",
                peers,
                ctx_of(&a.common, 0),
                &a.common,
                None,
            )
            .await;
            finish(s, &a.common);
            // The client runtime's threads would keep the process alive.
            std::process::exit(0);
        }
    }
}
