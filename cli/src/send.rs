//! `pproxy send`: sendSync, sendAsync or sendBatchSync, once or as a small load.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;

use crate::admin::call_once;
use pproxy_wire::client::{Client, ClientError};
use pproxy_wire::types::Reply;
use pproxy_wire::{Call, Message, Protocol};

use crate::common::{block_on, parse_props, print_reply, protocol, usage, Common};

#[derive(Args)]
pub struct SendArgs {
    /// Target topic.
    #[arg(long, required_unless_present = "batch")]
    pub topic: Option<String>,
    /// Body text (or use --body-file, --body-hex, or `-` for stdin).
    #[arg(long)]
    pub body: Option<String>,
    /// Body from a file (`-` = stdin).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Body as hex.
    #[arg(long)]
    pub body_hex: Option<String>,
    /// Message key.
    #[arg(long)]
    pub key: Option<String>,
    /// Tags.
    #[arg(long)]
    pub tags: Option<String>,
    /// Ordering key (partition -1).
    #[arg(long, conflicts_with = "partition")]
    pub hash_id: Option<i64>,
    /// Explicit partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Property k=v (repeatable).
    #[arg(long = "prop")]
    pub props: Vec<String>,
    /// Use sendAsync.
    #[arg(long)]
    r#async: bool,
    /// sendBatchSync of a JSON-lines file.
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Repeat this many times.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Over this many connections.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,
    #[command(flatten)]
    pub common: Common,
}

pub fn read_body(a: &SendArgs) -> Result<Option<Bytes>, String> {
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
pub fn batch_message(line: &str) -> Result<Message, String> {
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

pub fn send(a: SendArgs) -> ExitCode {
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
pub async fn repeat(c: &Common, proto: Protocol, call: Call, count: u64, conns: u64) -> ExitCode {
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
