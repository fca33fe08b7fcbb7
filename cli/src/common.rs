//! What the client commands share: the connection options, and the printing of replies and
//! admin answers with the exit status of operations.md §7.

use std::process::ExitCode;

use clap::Args;

use pproxy_wire::client::ClientError;
use pproxy_wire::http::HttpError;
use pproxy_wire::types::Reply;
use pproxy_wire::Protocol;

/// Options shared by the client commands.
#[derive(Args, Clone)]
pub struct Common {
    /// Proxy address.
    #[arg(long, default_value = "127.0.0.1:9613", global = true)]
    pub addr: String,
    /// compact or binary.
    #[arg(long, default_value = "compact", global = true)]
    pub protocol: String,
    /// Request timeout in ms.
    #[arg(long, default_value_t = 3000, global = true)]
    pub timeout_ms: i64,
    /// Admin endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9614", global = true)]
    pub admin: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A usage error: the message, exit status 2.
pub fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

pub fn parse_props(props: Vec<String>) -> Result<Vec<(String, String)>, String> {
    props
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--prop takes k=v, got {p}"))
        })
        .collect()
}

pub fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "compact" => Ok(Protocol::Compact),
        "binary" => Ok(Protocol::Binary),
        other => Err(format!("unknown protocol {other}")),
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| {
            eprintln!("runtime: {e}");
            ExitCode::from(1)
        })
}

pub fn print_reply(r: Result<Reply, ClientError>, json: bool) -> ExitCode {
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

pub fn print_admin(r: Result<(u16, String), HttpError>, admin: &str) -> ExitCode {
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
