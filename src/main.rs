//! The `pproxy` command: the server (`run`) and operator tools.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};

use pproxy::config::settings::Settings;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, DelayMessage, Message, Protocol};

#[derive(Parser)]
#[command(name = "pproxy", version, about = "DDMQ-compatible producer proxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
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
    /// Parse carrera.yaml and the proxy config; exit 0 valid, 2 invalid.
    CheckConfig {
        /// carrera.yaml path.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
    },
    /// Send one message with sendSync (or sendAsync).
    Send {
        /// Target topic.
        #[arg(long)]
        topic: String,
        /// Body text.
        #[arg(long)]
        body: Option<String>,
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
        /// Proxy address.
        #[arg(long, default_value = "127.0.0.1:9613")]
        addr: String,
        /// compact or binary.
        #[arg(long, default_value = "compact")]
        protocol: String,
        /// Request timeout in ms.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: i64,
    },
    /// sendDelaySync add/cancel, and the status of an id.
    Delay {
        #[command(subcommand)]
        cmd: DelayCmd,
        /// Proxy address.
        #[arg(long, default_value = "127.0.0.1:9613", global = true)]
        addr: String,
        /// Admin endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9614", global = true)]
        admin: String,
        /// Request timeout in ms.
        #[arg(long, default_value_t = 3000, global = true)]
        timeout_ms: i64,
    },
    /// Print version.
    Version,
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

fn print_reply(r: Result<Reply, pproxy::client::ClientError>) -> ExitCode {
    match r {
        Ok(Reply::Result {
            code,
            msg,
            delay_id,
            ..
        }) => {
            match delay_id {
                Some(id) if !id.is_empty() => println!("{code} {msg} {id}"),
                _ => println!("{code} {msg}"),
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

fn block_on<F: std::future::Future>(f: F) -> Option<F::Output> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt.block_on(f)),
        Err(e) => {
            eprintln!("runtime: {e}");
            None
        }
    }
}

fn delay_command(cmd: DelayCmd, addr: String, admin: String, timeout_ms: i64) -> ExitCode {
    use pproxy::cli::{admin_get, call_once, from_now, parse_duration_ms, parse_time};
    let dm = match cmd {
        DelayCmd::Status { id } => {
            return match admin_get(&admin, &format!("/delay/{id}")) {
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
            };
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
                eprintln!("give --at TIME or --in DURATION");
                return ExitCode::from(2);
            };
            let expire = match expire.map(|e| parse_time(&e)) {
                Some(None) => {
                    eprintln!("bad --expire");
                    return ExitCode::from(2);
                }
                Some(Some(e)) => e,
                None => 0,
            };
            let properties = match parse_props(props) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
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
    let call = Call::SendDelaySync(Some(dm), timeout_ms);
    block_on(call_once(&addr, Protocol::Compact, timeout_ms, &call))
        .map_or(ExitCode::from(1), print_reply)
}

fn load_settings(config: Option<PathBuf>) -> Result<Settings, String> {
    let path = config.or_else(|| {
        let p = PathBuf::from("conf/carrera.yaml");
        p.exists().then_some(p)
    });
    match path {
        None => Ok(Settings::default()),
        Some(p) => {
            let (s, unknown) = Settings::load(&p).map_err(|e| e.to_string())?;
            for k in unknown {
                eprintln!("warning: unknown key `{k}` in {} ignored", p.display());
            }
            Ok(s)
        }
    }
}

fn init_logging(s: &Settings) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| s.logging.level.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if s.logging.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version => {
            println!("pproxy {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { config } => match load_settings(config) {
            Ok(s) => {
                println!("mode: {:?}, node: {}", s.mode(), s.node_name());
                if let pproxy::config::settings::Mode::Local(p) = s.mode() {
                    let text = match std::fs::read_to_string(&p) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("{}: {e}", p.display());
                            return ExitCode::from(2);
                        }
                    };
                    if let Err(e) = pproxy::config::model::ProxyConfig::parse(&text, false) {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
                println!("configuration valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run {
            config,
            pid_file,
            log_dir,
        } => {
            let config_path = config.clone().or_else(|| {
                let p = PathBuf::from("conf/carrera.yaml");
                p.exists().then_some(p)
            });
            let mut settings = match load_settings(config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(d) = log_dir {
                settings.logging.dir = d;
            }
            if let Err(e) = pproxy::logging::init(&settings.logging) {
                eprintln!(
                    "logging to {}: {e}; logging to stderr",
                    settings.logging.dir.display()
                );
                init_logging(&settings);
            }
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
            match rt.block_on(pproxy::runtime::run(settings, config_path, pid_file)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "fatal");
                    eprintln!("pproxy: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
        Cmd::Send {
            topic,
            body,
            key,
            tags,
            hash_id,
            partition,
            props,
            r#async,
            addr,
            protocol,
            timeout_ms,
        } => {
            let protocol = match protocol.as_str() {
                "compact" => Protocol::Compact,
                "binary" => Protocol::Binary,
                other => {
                    eprintln!("unknown protocol {other}");
                    return ExitCode::from(2);
                }
            };
            let properties = match parse_props(props) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let m = Message {
                topic: Some(topic),
                key,
                body: body.map(Bytes::from),
                tags,
                hash_id: hash_id.unwrap_or(0),
                partition_id: match (partition, hash_id) {
                    (Some(p), _) => p,
                    (None, Some(_)) => -1,
                    (None, None) => -2,
                },
                properties,
                ..Default::default()
            };
            let call = if r#async {
                Call::SendAsync(Some(m))
            } else {
                Call::SendSync(Some(m), timeout_ms)
            };
            block_on(pproxy::cli::call_once(&addr, protocol, timeout_ms, &call))
                .map_or(ExitCode::from(1), print_reply)
        }
        Cmd::Delay {
            cmd,
            addr,
            admin,
            timeout_ms,
        } => delay_command(cmd, addr, admin, timeout_ms),
    }
}
