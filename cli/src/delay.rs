//! `pproxy delay`: sendDelaySync add and cancel, an id's status, dead letters.

use std::process::ExitCode;

use bytes::Bytes;
use clap::Subcommand;

use crate::admin::{admin_get, admin_request, call_once, from_now, parse_duration_ms, parse_time};
use pproxy_wire::{Call, DelayMessage};

use crate::common::{block_on, parse_props, print_admin, print_reply, protocol, usage, Common};

#[derive(Subcommand)]
pub enum DelayCmd {
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
pub enum DeadCmd {
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

pub fn delay_command(cmd: DelayCmd, c: Common) -> ExitCode {
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
