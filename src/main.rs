//! The `pproxy` command: the server (`run`) and the operator tools (operations.md §7).
//! Exit status of the tools: 0 result code 0; 1 non-zero result code; 2 usage error;
//! 3 transport error, socket timeout or admin endpoint unreachable.

#![recursion_limit = "256"]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

use pproxy::cli::{admin_get, admin_request, call_once, from_now, parse_duration_ms, parse_time};
use pproxy::client::{Client, ClientError};
use pproxy::config::settings::{Mode, Settings};
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, DelayMessage, Message, Protocol};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PPROXY_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(name = "pproxy", version = VERSION, about = "DDMQ-compatible producer proxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options shared by the client commands.
#[derive(Args, Clone)]
struct Common {
    /// Proxy address.
    #[arg(long, default_value = "127.0.0.1:9613", global = true)]
    addr: String,
    /// compact or binary.
    #[arg(long, default_value = "compact", global = true)]
    protocol: String,
    /// Request timeout in ms.
    #[arg(long, default_value_t = 3000, global = true)]
    timeout_ms: i64,
    /// Admin endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9614", global = true)]
    admin: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (without -c: conf/carrera.yaml if present, else embedded mode).
    Run {
        /// carrera.yaml path.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        /// Write the pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Log directory (overrides logging.dir).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// Parse carrera.yaml and the proxy config; print admitted topics and clusters.
    CheckConfig {
        /// carrera.yaml path.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
    },
    /// Send messages with sendSync (or sendAsync, or sendBatchSync with --batch).
    Send(SendArgs),
    /// sendDelaySync add/cancel, id status, dead letters.
    Delay {
        #[command(subcommand)]
        cmd: DelayCmd,
        #[command(flatten)]
        common: Common,
    },
    /// Summary of /status and /ready.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Print version and commit.
    Version,
}

#[derive(Args)]
struct SendArgs {
    /// Target topic.
    #[arg(long, required_unless_present = "batch")]
    topic: Option<String>,
    /// Body text (or use --body-file, --body-hex, or `-` for stdin).
    #[arg(long)]
    body: Option<String>,
    /// Body from a file (`-` = stdin).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Body as hex.
    #[arg(long)]
    body_hex: Option<String>,
    /// Message key.
    #[arg(long)]
    key: Option<String>,
    /// Tags.
    #[arg(long)]
    tags: Option<String>,
    /// Ordering key (partition -1).
    #[arg(long, conflicts_with = "partition")]
    hash_id: Option<i64>,
    /// Explicit partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Property k=v (repeatable).
    #[arg(long = "prop")]
    props: Vec<String>,
    /// Use sendAsync.
    #[arg(long)]
    r#async: bool,
    /// sendBatchSync of a JSON-lines file.
    #[arg(long)]
    batch: Option<PathBuf>,
    /// Repeat this many times.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Over this many connections.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum DelayCmd {
    /// Add a delay message; prints `code msg id`.
    Add {
        /// Delay topic.
        #[arg(long)]
        topic: String,
        /// Body text.
        #[arg(long)]
        body: String,
        /// First fire time: epoch seconds, epoch ms or RFC 3339.
        #[arg(long, conflicts_with = "in_")]
        at: Option<String>,
        /// First fire after this delay: 250ms, 90s, 5m, 2h, 3d.
        #[arg(long = "in")]
        in_: Option<String>,
        /// 2 one-shot, 3 fixed loop, 4 exponential loop.
        #[arg(long = "type", default_value_t = 2)]
        dtype: i32,
        /// Loop interval (s) or exponent base.
        #[arg(long, default_value_t = 0)]
        interval: i64,
        /// Loop fires.
        #[arg(long, default_value_t = 0)]
        times: i64,
        /// Loop expire TIME.
        #[arg(long)]
        expire: Option<String>,
        /// Client uuid (retries with the same uuid are idempotent).
        #[arg(long)]
        uuid: Option<String>,
        /// Tags.
        #[arg(long)]
        tags: Option<String>,
        /// Property k=v (repeatable).
        #[arg(long = "prop")]
        props: Vec<String>,
    },
    /// Cancel a delay message by any of its ids.
    Cancel {
        /// Delay topic.
        #[arg(long)]
        topic: String,
        /// The id.
        #[arg(long)]
        id: String,
    },
    /// Status of an id (admin HTTP).
    Status {
        /// The id.
        id: String,
    },
    /// Dead letters: list, redrive ID K, purge ID K.
    Dead {
        #[command(subcommand)]
        cmd: DeadCmd,
    },
}

#[derive(Subcommand)]
enum DeadCmd {
    /// List dead letters, oldest first.
    List {
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Fire one again now.
    Redrive {
        /// Id.
        id: String,
        /// Occurrence index.
        k: u64,
    },
    /// Delete one.
    Purge {
        /// Id.
        id: String,
        /// Occurrence index.
        k: u64,
    },
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let p = PathBuf::from("conf/carrera.yaml");
        p.exists().then_some(p)
    })
}

fn load_settings(path: Option<&PathBuf>) -> Result<Settings, String> {
    match path {
        None => Ok(Settings::default()),
        Some(p) => {
            let (s, unknown) = Settings::load(p).map_err(|e| e.to_string())?;
            for k in unknown {
                eprintln!("warning: unknown key `{k}` in {} ignored", p.display());
            }
            Ok(s)
        }
    }
}

fn parse_props(props: Vec<String>) -> Result<Vec<(String, String)>, String> {
    props
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--prop takes k=v, got {p}"))
        })
        .collect()
}

fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "compact" => Ok(Protocol::Compact),
        "binary" => Ok(Protocol::Binary),
        other => Err(format!("unknown protocol {other}")),
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| {
            eprintln!("runtime: {e}");
            ExitCode::from(1)
        })
}

fn print_reply(r: Result<Reply, ClientError>, json: bool) -> ExitCode {
    match r {
        Ok(Reply::Result {
            code,
            msg,
            delay_id,
            ..
        }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"code": code, "msg": msg, "uniqDelayMsgId": delay_id})
                );
            } else {
                match delay_id {
                    Some(id) if !id.is_empty() => println!("{code} {msg} {id}"),
                    _ => println!("{code} {msg}"),
                }
            }
            if code == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Ok(Reply::Exception { kind, message, .. }) => {
            println!("exception {kind}: {message}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
    }
}

fn print_admin(r: std::io::Result<(u16, String)>, admin: &str) -> ExitCode {
    match r {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("{status} {body}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("admin endpoint {admin}: {e}");
            ExitCode::from(3)
        }
    }
}

fn read_body(a: &SendArgs) -> Result<Option<Bytes>, String> {
    if let Some(h) = &a.body_hex {
        let h = h.trim();
        if h.len() % 2 != 0 {
            return Err("--body-hex needs an even number of digits".into());
        }
        let bytes: Result<Vec<u8>, _> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16))
            .collect();
        return bytes
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| format!("--body-hex: {e}"));
    }
    let from_file = |p: &PathBuf| -> Result<Bytes, String> {
        if p.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map_err(|e| e.to_string())?;
            Ok(Bytes::from(v))
        } else {
            std::fs::read(p)
                .map(Bytes::from)
                .map_err(|e| format!("{}: {e}", p.display()))
        }
    };
    match (&a.body_file, &a.body) {
        (Some(p), _) => from_file(p).map(Some),
        (None, Some(b)) if b == "-" => from_file(&PathBuf::from("-")).map(Some),
        (None, Some(b)) => Ok(Some(Bytes::from(b.clone()))),
        (None, None) => Ok(None),
    }
}

/// One JSON-lines entry of `send --batch`.
fn batch_message(line: &str) -> Result<Message, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let body = match (s("bodyHex"), s("body")) {
        (Some(h), _) => {
            let b: Result<Vec<u8>, _> = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(h.get(i..i + 2).unwrap_or("x"), 16))
                .collect();
            Some(Bytes::from(b.map_err(|e| format!("bodyHex: {e}"))?))
        }
        (None, b) => b.map(Bytes::from),
    };
    let properties = v
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Message {
        topic: s("topic"),
        key: s("key"),
        body,
        tags: s("tags"),
        hash_id: v.get("hashId").and_then(|x| x.as_i64()).unwrap_or(0),
        partition_id: v.get("partitionId").and_then(|x| x.as_i64()).unwrap_or(-2) as i32,
        properties,
        ..Default::default()
    })
}

fn send(a: SendArgs) -> ExitCode {
    let c = a.common.clone();
    let proto = match protocol(&c.protocol) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let call = if let Some(path) = &a.batch {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return usage(format!("{}: {e}", path.display())),
        };
        let msgs: Result<Vec<Message>, String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(batch_message)
            .collect();
        match msgs {
            Ok(m) => Call::SendBatchSync(m),
            Err(e) => return usage(format!("--batch: {e}")),
        }
    } else {
        let body = match read_body(&a) {
            Ok(b) => b,
            Err(e) => return usage(e),
        };
        let properties = match parse_props(a.props.clone()) {
            Ok(p) => p,
            Err(e) => return usage(e),
        };
        let m = Message {
            topic: a.topic.clone(),
            key: a.key.clone(),
            body,
            tags: a.tags.clone(),
            hash_id: a.hash_id.unwrap_or(0),
            partition_id: match (a.partition, a.hash_id) {
                (Some(p), _) => p,
                (None, Some(_)) => -1,
                (None, None) => -2,
            },
            properties,
            ..Default::default()
        };
        if a.r#async {
            Call::SendAsync(Some(m))
        } else {
            Call::SendSync(Some(m), c.timeout_ms)
        }
    };
    if a.count <= 1 {
        return block_on(call_once(&c.addr, proto, c.timeout_ms, &call))
            .map_or_else(|e| e, |r| print_reply(r, c.json));
    }
    match block_on(repeat(&c, proto, call, a.count, a.concurrency.max(1))) {
        Ok(code) => code,
        Err(code) => code,
    }
}

/// `send --count N --concurrency C`: code histogram and latency p50/p99/max.
async fn repeat(c: &Common, proto: Protocol, call: Call, count: u64, conns: u64) -> ExitCode {
    let socket = Duration::from_millis(c.timeout_ms.max(0) as u64 + 1000);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (addr, call, next) = (c.addr.clone(), call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(i32, Duration)> = Vec::new();
            let mut client = Client::connect(&addr, proto, socket).await?;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let t = Instant::now();
                let code = match client.call(&call).await? {
                    Reply::Result { code, .. } => code,
                    Reply::Exception { .. } => -1,
                };
                out.push((code, t.elapsed()));
            }
            Ok::<_, ClientError>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => all.extend(v),
            Ok(Err(e)) => {
                eprintln!("{e}");
                return ExitCode::from(3);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut codes = std::collections::BTreeMap::new();
    for (code, _) in &all {
        *codes.entry(*code).or_insert(0u64) += 1;
    }
    let mut lat: Vec<Duration> = all.iter().map(|(_, d)| *d).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if c.json {
        println!(
            "{}",
            serde_json::json!({"codes": codes, "p50_ms": ms(pct(0.5)), "p99_ms": ms(pct(0.99)), "max_ms": ms(pct(1.0))})
        );
    } else {
        for (code, n) in &codes {
            println!("code {code}: {n}");
        }
        println!(
            "latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(pct(1.0))
        );
    }
    if codes.keys().all(|c| *c == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn delay_command(cmd: DelayCmd, c: Common) -> ExitCode {
    let dm = match cmd {
        DelayCmd::Status { id } => {
            return print_admin(admin_get(&c.admin, &format!("/delay/{id}")), &c.admin)
        }
        DelayCmd::Dead { cmd } => {
            let (method, path) = match cmd {
                DeadCmd::List { topic, limit } => (
                    "GET",
                    format!(
                        "/delay/dead?topic={}&limit={limit}",
                        topic.unwrap_or_default()
                    ),
                ),
                DeadCmd::Redrive { id, k } => ("POST", format!("/delay/dead/{id}/{k}/redrive")),
                DeadCmd::Purge { id, k } => ("POST", format!("/delay/dead/{id}/{k}/purge")),
            };
            return print_admin(admin_request(&c.admin, method, &path), &c.admin);
        }
        DelayCmd::Cancel { topic, id } => DelayMessage {
            topic: Some(topic),
            uniq_delay_msg_id: Some(id),
            body: Some(Bytes::from_static(b"c")),
            action: 2,
            ..Default::default()
        },
        DelayCmd::Add {
            topic,
            body,
            at,
            in_,
            dtype,
            interval,
            times,
            expire,
            uuid,
            tags,
            props,
        } => {
            let timestamp = match (at, in_) {
                (Some(a), _) => parse_time(&a),
                (None, Some(d)) => parse_duration_ms(&d).map(from_now),
                (None, None) => None,
            };
            let Some(timestamp) = timestamp else {
                return usage("give --at TIME or --in DURATION");
            };
            let expire = match expire.map(|e| parse_time(&e)) {
                Some(None) => return usage("bad --expire"),
                Some(Some(e)) => e,
                None => 0,
            };
            let properties = match parse_props(props) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            DelayMessage {
                topic: Some(topic),
                body: Some(Bytes::from(body)),
                tags,
                action: 1,
                timestamp,
                dmsgtype: dtype,
                interval,
                times,
                expire,
                uuid,
                properties,
                ..Default::default()
            }
        }
    };
    let proto = match protocol(&c.protocol) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let call = Call::SendDelaySync(Some(dm), c.timeout_ms);
    block_on(call_once(&c.addr, proto, c.timeout_ms, &call))
        .map_or_else(|e| e, |r| print_reply(r, c.json))
}

fn status(c: Common) -> ExitCode {
    let status = match admin_get(&c.admin, "/status") {
        Ok((200, body)) => body,
        other => return print_admin(other, &c.admin),
    };
    let ready = admin_get(&c.admin, "/ready")
        .map(|(_, b)| b)
        .unwrap_or_default();
    if c.json {
        println!(
            "{{\"status\":{status},\"ready\":{}}}",
            if ready.is_empty() { "null" } else { &ready }
        );
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let r: serde_json::Value = serde_json::from_str(&ready).unwrap_or_default();
    let text = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    println!(
        "pproxy {} on {} ({} mode, config {} generation {})",
        text("version"),
        text("node"),
        text("mode"),
        text("configSource"),
        v["configGeneration"]
    );
    println!(
        "ready: {}",
        if r["ready"] == true {
            "yes".to_string()
        } else {
            format!("no {}", r["reasons"])
        }
    );
    println!(
        "uptime {} s, {} connections, {} requests in progress",
        v["uptimeSec"], v["connections"], v["inflightRequests"]
    );
    if let Some(b) = v["embeddedBootstrap"].as_str() {
        println!("embedded Kafka bootstrap: {b}");
    }
    if let Some(s) = v.get("scheduler") {
        println!(
            "delay: {} pending, {} loaded, {} in flight, {} dead, fired-through lag {} ms",
            s["pending"], s["loaded"], s["inflight"], s["dead"], s["firedThroughLagMs"]
        );
    }
    for t in v["topics"].as_array().into_iter().flatten() {
        let clusters: Vec<&str> = t["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        let delay = if t["delayTopic"] == true {
            " (delay)"
        } else {
            ""
        };
        println!(
            "topic {} -> {}{delay}",
            t["topic"].as_str().unwrap_or("?"),
            clusters.join(",")
        );
    }
    ExitCode::SUCCESS
}

fn check_config(config: Option<PathBuf>) -> ExitCode {
    let path = config_path(config);
    let settings = match load_settings(path.as_ref()) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    println!(
        "mode: {:?}, node: {}",
        settings.mode(),
        settings.node_name()
    );
    if let Err(e) = pproxy::security::Security::prepare(&settings) {
        return usage(e);
    }
    match settings.mode() {
        Mode::Local(p) => {
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => return usage(format!("{}: {e}", p.display())),
            };
            let proxy = match pproxy::config::model::ProxyConfig::parse(&text, false) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            let cs = &settings.scheduler.cluster;
            if cs.enabled {
                match pproxy::delay::cluster::plan(cs, &proxy) {
                    Ok(p) => println!(
                        "delay cluster mode: journal {} on {} ({}), group {}",
                        p.topic, cs.journal_cluster, p.bootstrap, p.group
                    ),
                    Err(e) => return usage(e),
                }
            }
            let statics = settings
                .default_topic_info_conf
                .as_ref()
                .map(pproxy::config::model::parse_topic_info)
                .transpose();
            let statics = match statics {
                Ok(s) => s.unwrap_or_default(),
                Err(e) => return usage(e),
            };
            let table = pproxy::forward::admit::TopicTable::build(
                &proxy,
                &statics,
                &[],
                &settings.node_name(),
            );
            for (name, k) in &proxy.carrera.kafka {
                println!("cluster {name}: kafka {}", k.bootstrap_servers.join(","));
            }
            for (name, r) in &proxy.carrera.rocketmq {
                println!("cluster {name}: rocketmq {}", r.namesrv_addrs.join(";"));
            }
            for t in table.all() {
                println!(
                    "topic {} -> {}{}",
                    t.name,
                    t.clusters.join(","),
                    if t.delay_topic { " (delay)" } else { "" }
                );
            }
        }
        Mode::Embedded => println!("embedded: every valid topic is admitted on first use"),
        Mode::ZooKeeper => println!(
            "ZooKeeper mode: topics and clusters come from {} (/carrera/v4/config), not contacted by check-config",
            settings.zookeeper_addr.as_deref().unwrap_or_default()
        ),
    }
    println!("configuration valid");
    ExitCode::SUCCESS
}

fn run(config: Option<PathBuf>, pid_file: Option<PathBuf>, log_dir: Option<PathBuf>) -> ExitCode {
    let path = config_path(config);
    let mut settings = match load_settings(path.as_ref()) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if let Some(d) = log_dir {
        settings.logging.dir = d;
    }
    if let Err(e) = pproxy::logging::init(&settings.logging) {
        eprintln!(
            "pproxy: cannot log to {}: {e}",
            settings.logging.dir.display()
        );
        return ExitCode::from(2);
    }
    tracing::info!(version = VERSION, "starting");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(pproxy::runtime::run(settings, path, pid_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("pproxy: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Version => {
            println!("pproxy {VERSION}");
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { config } => check_config(config),
        Cmd::Run {
            config,
            pid_file,
            log_dir,
        } => run(config, pid_file, log_dir),
        Cmd::Send(a) => send(a),
        Cmd::Delay { cmd, common } => delay_command(cmd, common),
        Cmd::Status { common } => status(common),
    }
}
