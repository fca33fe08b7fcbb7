//! One frame in, at most one reply frame out: header, method, arguments, handler (wire.md §3).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::time::Instant;

use super::Context;
use crate::forward::Outcome;
use crate::metrics::labels::{self, Kind};
use crate::proto::codec::{message_type, read_header, Reader};
use crate::proto::types::{encode_exception, encode_reply, read_call, AppExceptionType};
use crate::proto::HEARTBEAT_TOPIC;
use crate::proto::{Call, Code, MessageHeader, Method};
use crate::security::Peer;

/// What the connection does after a frame.
#[derive(Debug)]
pub enum FrameResult {
    /// Write this frame.
    Reply(Bytes),
    /// Nothing to write (ONEWAY).
    NoReply,
    /// Close the connection (undecodable header).
    Close,
}

fn exception_counted(
    cx: &Context,
    h: &MessageHeader,
    kind: AppExceptionType,
    msg: &str,
) -> FrameResult {
    let label = match kind {
        AppExceptionType::UnknownMethod => "unknown_method",
        AppExceptionType::InvalidMessageType => "invalid_type",
        AppExceptionType::ProtocolError => "decode",
    };
    cx.metrics
        .protocol_errors
        .get_or_create(&Kind { kind: label })
        .inc();
    exception(h, kind, msg)
}

fn exception(h: &MessageHeader, kind: AppExceptionType, msg: &str) -> FrameResult {
    if h.mtype == message_type::ONEWAY {
        return FrameResult::NoReply;
    }
    FrameResult::Reply(encode_exception(h.protocol, &h.name, h.seqid, kind, msg))
}

fn unknown_method(h: &MessageHeader) -> FrameResult {
    let msg = format!(
        "Invalid method name: '{}'",
        String::from_utf8_lossy(&h.name)
    );
    exception(h, AppExceptionType::UnknownMethod, &msg)
}

/// Reply for a frame whose header was read but whose arguments are refused outright.
pub fn reply_code(h: &MessageHeader, code: Code) -> FrameResult {
    if h.mtype != message_type::CALL && h.mtype != message_type::ONEWAY {
        return exception(
            h,
            AppExceptionType::InvalidMessageType,
            "invalid message type",
        );
    }
    let Some(method) = Method::from_name(&h.name) else {
        return unknown_method(h);
    };
    if h.mtype == message_type::ONEWAY {
        return FrameResult::NoReply;
    }
    FrameResult::Reply(encode_reply(
        h.protocol,
        &h.name,
        h.seqid,
        method.is_delay(),
        &code,
        "",
    ))
}

/// Handles one complete frame payload that was fully read at `start`.
pub async fn handle_frame(
    cx: &Arc<Context>,
    payload: Bytes,
    start: Instant,
    peer: &Peer,
) -> FrameResult {
    let Ok((h, pos)) = read_header(&payload) else {
        cx.metrics
            .protocol_errors
            .get_or_create(&Kind { kind: "bad_header" })
            .inc();
        return FrameResult::Close;
    };
    let proto = match h.protocol {
        crate::proto::Protocol::Compact => "compact",
        crate::proto::Protocol::Binary => "binary",
    };
    cx.metrics
        .frames
        .get_or_create(&labels::Protocol { protocol: proto })
        .inc();
    if h.mtype != message_type::CALL && h.mtype != message_type::ONEWAY {
        let why = "invalid message type";
        return exception_counted(cx, &h, AppExceptionType::InvalidMessageType, why);
    }
    let Some(method) = Method::from_name(&h.name) else {
        cx.metrics
            .protocol_errors
            .get_or_create(&Kind {
                kind: "unknown_method",
            })
            .inc();
        return unknown_method(&h);
    };
    let mut r = Reader::new(&payload, pos, h.protocol);
    let call = match read_call(&mut r, method) {
        Ok(c) => c,
        Err(e) => {
            return exception_counted(cx, &h, AppExceptionType::ProtocolError, &e.to_string());
        }
    };
    let echo_id = cancel_echo(&call);
    let topic = call_topic(&call);
    let handled = AssertUnwindSafe(run(cx, method, call, start, peer))
        .catch_unwind()
        .await;
    let (outcome, id) = handled.unwrap_or_else(|_| {
        tracing::error!(method = method.name(), "handler panicked; answered 10");
        (Code::Failed.into(), echo_id)
    });
    observe_request(cx, method, topic.as_deref(), outcome.code, start);
    log_request(cx, &h, method, topic.as_deref(), &outcome, start, peer);
    if h.mtype == message_type::ONEWAY {
        return FrameResult::NoReply;
    }
    FrameResult::Reply(encode_reply(
        h.protocol,
        &h.name,
        h.seqid,
        method.is_delay(),
        &outcome.code,
        &id,
    ))
}

/// The request deadline for a client `timeout` (wire.md §1).
pub fn sync_deadline(cx: &Context, start: Instant, timeout: i64) -> Instant {
    let settings = cx.live.settings();
    let f = &settings.forwarding;
    let bound = if timeout > 0 {
        Duration::from_millis(timeout as u64).min(f.max_timeout_ms)
    } else {
        f.default_timeout_ms
    };
    start + bound
}

/// The topic a request is counted under (a batch: its first message's).
fn call_topic(call: &Call) -> Option<String> {
    match call {
        Call::SendSync(m, _) | Call::SendAsync(m) => m.as_ref().and_then(|m| m.topic.clone()),
        Call::SendBatchSync(ms) => ms.first().and_then(|m| m.topic.clone()),
        Call::SendDelaySync(d, _) => d.as_ref().and_then(|d| d.topic.clone()),
    }
}

/// Counts an answered request; topics that are not admitted share the label `_other`.
fn observe_request(cx: &Context, method: Method, topic: Option<&str>, code: Code, start: Instant) {
    let label = match topic {
        Some(HEARTBEAT_TOPIC) if method == Method::SendSync => heartbeat_label(),
        Some(t) => match cx.live.snapshot().topics.admit(t) {
            Some(route) => route.name.clone(),
            None => labels::other_topic(),
        },
        None => labels::other_topic(),
    };
    let seconds = start.elapsed().as_secs_f64();
    cx.metrics
        .request(method.name(), label, code.as_i32(), seconds);
}

/// The topic label of heartbeats.
fn heartbeat_label() -> labels::Topic {
    static HEARTBEAT: std::sync::LazyLock<labels::Topic> =
        std::sync::LazyLock::new(|| HEARTBEAT_TOPIC.into());
    HEARTBEAT.clone()
}

/// The access log line (when enabled) and the sampled failure line of one request.
fn log_request(
    cx: &Context,
    h: &MessageHeader,
    method: Method,
    topic: Option<&str>,
    outcome: &Outcome,
    start: Instant,
    peer: &Peer,
) {
    let peer = peer.addr;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let code = outcome.code.as_i32();
    // Topics are client input: bound what reaches the logs.
    let topic: String = topic.unwrap_or("").chars().take(128).collect();
    let settings = cx.live.settings();
    let settings = &settings.logging;
    if settings.access_log {
        tracing::info!(
            target: crate::logging::ACCESS_TARGET,
            peer = ?peer, method = method.name(), seqid = h.seqid, topic = %topic, code, elapsed_ms,
        );
    }
    if code != 0 {
        if let Some(suppressed) = cx.failures.admit(code, settings.failure_logs_per_sec) {
            match &outcome.cause {
                // The broker's reason: the wire message of 10 cannot carry it (wire.md §6).
                Some(cause) => {
                    tracing::info!(method = method.name(), topic = %topic, code, elapsed_ms, suppressed, %cause, "request failed")
                }
                None => {
                    tracing::info!(method = method.name(), topic = %topic, code, elapsed_ms, suppressed, "request failed")
                }
            }
        }
    }
}

/// The id a delay reply carries whatever the outcome: the cancel id as received, else "".
fn cancel_echo(call: &Call) -> String {
    match call {
        Call::SendDelaySync(Some(d), _) if d.action == 2 => {
            d.uniq_delay_msg_id.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

async fn run(
    cx: &Arc<Context>,
    method: Method,
    call: Call,
    start: Instant,
    peer: &Peer,
) -> (Outcome, String) {
    let echo = cancel_echo(&call);
    if cx.traffic.is_draining() {
        return (Code::ShuttingDown.into(), echo);
    }
    // ACLs first: a refused client learns nothing about topics or ids (docs/SECURITY.md).
    let principal = match cx.security.acl.load().check(peer, &call) {
        Ok(p) => p,
        Err((who, why)) => {
            let labels = labels::AclDenied {
                method: method.name(),
                principal: who.as_deref().unwrap_or("_none").into(),
                reason: why.label(),
            };
            cx.metrics.acl_denied.get_or_create(&labels).inc();
            return (Code::NotWhitelisted.into(), echo);
        }
    };
    let _guard = cx.traffic.begin_request();
    if cx.traffic.inflight() > cx.live.settings().server.max_inflight_requests {
        return (Code::RateLimited.into(), echo);
    }
    let async_deadline = start + cx.live.settings().forwarding.async_timeout_ms;
    match call {
        Call::SendSync(m, timeout) => {
            if m.as_ref().and_then(|m| m.topic.as_deref()) == Some(HEARTBEAT_TOPIC) {
                return (Code::Ok.into(), String::new());
            }
            let deadline = sync_deadline(cx, start, timeout);
            let snap = cx.live.snapshot_full();
            (
                cx.forwarder.send_one(&snap, m, deadline).await,
                String::new(),
            )
        }
        Call::SendAsync(m) => {
            let snap = cx.live.snapshot_full();
            let code = cx.forwarder.send_one(&snap, m, async_deadline).await;
            (code, String::new())
        }
        Call::SendBatchSync(ms) => {
            let snap = cx.live.snapshot_full();
            let code = cx.forwarder.send_batch(&snap, ms, async_deadline).await;
            (code, String::new())
        }
        Call::SendDelaySync(m, timeout) => {
            let deadline = sync_deadline(cx, start, timeout);
            match tokio::time::timeout_at(
                deadline,
                cx.delay.handle(m, deadline, principal.as_deref()),
            )
            .await
            {
                Ok((code, id)) => (code.into(), id),
                Err(_) => (Code::Timeout.into(), echo),
            }
        }
    }
}
