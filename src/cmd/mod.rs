//! The commands of the `pproxy` binary, one file each, and what they share: the client options,
//! configuration loading and the printing of replies.

pub(crate) mod check;
pub(crate) mod delay;
pub(crate) mod run;
pub(crate) mod send;
pub(crate) mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pproxy::client::ClientError;
use pproxy::config::settings::Settings;
use pproxy::http::client::HttpError;
use pproxy::proto::types::Reply;
use pproxy::proto::Protocol;

pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PPROXY_GIT_COMMIT"),
    ")"
);

/// Options shared by the client commands.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Proxy address.
    #[arg(long, default_value = "127.0.0.1:9613", global = true)]
    pub(crate) addr: String,
    /// compact or binary.
    #[arg(long, default_value = "compact", global = true)]
    pub(crate) protocol: String,
    /// Request timeout in ms.
    #[arg(long, default_value_t = 3000, global = true)]
    pub(crate) timeout_ms: i64,
    /// Admin endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9614", global = true)]
    pub(crate) admin: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

pub(crate) fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

pub(crate) fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let p = PathBuf::from("conf/carrera.yaml");
        p.exists().then_some(p)
    })
}

pub(crate) fn load_settings(path: Option<&PathBuf>) -> Result<Settings, String> {
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

pub(crate) fn parse_props(props: Vec<String>) -> Result<Vec<(String, String)>, String> {
    props
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--prop takes k=v, got {p}"))
        })
        .collect()
}

pub(crate) fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "compact" => Ok(Protocol::Compact),
        "binary" => Ok(Protocol::Binary),
        other => Err(format!("unknown protocol {other}")),
    }
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| {
            eprintln!("runtime: {e}");
            ExitCode::from(1)
        })
}

pub(crate) fn print_reply(r: Result<Reply, ClientError>, json: bool) -> ExitCode {
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

pub(crate) fn print_admin(r: Result<(u16, String), HttpError>, admin: &str) -> ExitCode {
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
