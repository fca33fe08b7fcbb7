//! The `pproxy` command: the server (`run`) and operator tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};

use pproxy::client::Client;
use pproxy::config::settings::Settings;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Message, Protocol};

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
    /// Print version.
    Version,
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
            init_logging(&settings);
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
            match rt.block_on(pproxy::runtime::run(settings, pid_file)) {
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
            let mut properties = Vec::new();
            for p in props {
                let Some((k, v)) = p.split_once('=') else {
                    eprintln!("--prop takes k=v");
                    return ExitCode::from(2);
                };
                properties.push((k.to_string(), v.to_string()));
            }
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
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let socket_timeout = Duration::from_millis(timeout_ms.max(0) as u64 + 1000);
            let r = rt.block_on(async {
                let mut c = Client::connect(&addr, protocol, socket_timeout).await?;
                c.call(&call).await
            });
            match r {
                Ok(Reply::Result { code, msg, .. }) => {
                    println!("{code} {msg}");
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
    }
}
