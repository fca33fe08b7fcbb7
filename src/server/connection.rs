//! One client connection: framed reads, protocol limits, answers in request order (wire.md §2, §4).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatch::{handle_frame, reply_code, FrameResult};
use super::reader::{FrameReader, Source};
use super::Context;
use crate::metrics::labels::{self, Kind};
use crate::proto::codec::read_header;
use crate::proto::Code;
use crate::security::tls::{peer_subject, HANDSHAKE_RECORD};
use crate::security::Peer;

/// At most one `unframed transport not supported` line per peer address per minute.
fn unframed_log_due(ip: Option<std::net::IpAddr>) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LAST: OnceLock<Mutex<HashMap<Option<std::net::IpAddr>, Instant>>> = OnceLock::new();
    let mut last = LAST
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    // Bounded: forget entries older than the window whenever the map grows.
    if last.len() > 10_000 {
        last.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
    }
    match last.get(&ip) {
        Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
        _ => {
            last.insert(ip, now);
            true
        }
    }
}

/// How long a closing connection waits for a request already in transit.
const CLOSE_LINGER: Duration = Duration::from_millis(200);

/// Payload bytes read (and budget taken) per step.
const READ_CHUNK: usize = 64 * 1024;

/// How much of an oversized frame is read to find its message header.
const OVERSIZE_HEADER_PEEK: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or reset.
    Peer,
    /// Idle timeout.
    Idle,
    /// Protocol violation.
    Protocol,
    /// Process shutdown.
    Shutdown,
    /// The peer stopped reading its replies: one could not be written within
    /// `server.writeTimeoutMs`.
    WriteTimeout,
}

/// Shared limits of all connections.
pub struct ConnLimits {
    /// Bytes of frames read but not yet answered, across all connections.
    pub inflight_bytes: Arc<Semaphore>,
    /// Total permits of `inflight_bytes`.
    pub inflight_budget: usize,
}

/// Serves one accepted connection until it closes. With TLS configured, the first byte tells a
/// TLS client from a plaintext one (docs/SECURITY.md).
pub async fn serve(
    cx: Arc<Context>,
    stream: TcpStream,
    limits: Arc<ConnLimits>,
    close: CancellationToken,
) -> CloseReason {
    let addr = stream.peer_addr().ok();
    let Some(acceptor) = cx.security.tls.acceptor() else {
        let (rd, wr) = stream.into_split();
        return serve_io(cx, rd, wr, Peer::plain(addr), limits, close).await;
    };
    let first = match first_byte(&cx, &stream, &close).await {
        Ok(b) => b,
        Err(reason) => return reason,
    };
    let count = |result: &'static str| {
        let labels = labels::Tls {
            port: "thrift",
            result,
        };
        cx.metrics.tls_connections.get_or_create(&labels).inc();
    };
    if first != HANDSHAKE_RECORD {
        if cx.live.settings().tls.required {
            count("plaintext_refused");
            return CloseReason::Protocol;
        }
        count("plaintext");
        let (rd, wr) = stream.into_split();
        return serve_io(cx, rd, wr, Peer::plain(addr), limits, close).await;
    }
    let tls = match tokio::time::timeout(frame_timeout(&cx), acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            count("handshake_failed");
            tracing::debug!(peer = ?addr, error = %e, "TLS handshake failed");
            return CloseReason::Protocol;
        }
        Err(_) => {
            count("handshake_timeout");
            return CloseReason::Idle;
        }
    };
    count("tls");
    let peer = Peer {
        addr,
        tls: true,
        subject: peer_subject(tls.get_ref().1),
    };
    let (rd, wr) = tokio::io::split(tls);
    serve_io(cx, rd, wr, peer, limits, close).await
}

/// Waits for a connection's first byte without consuming it, within the idle timeout.
async fn first_byte(
    cx: &Context,
    stream: &TcpStream,
    close: &CancellationToken,
) -> Result<u8, CloseReason> {
    if close.is_cancelled() {
        return Err(CloseReason::Shutdown);
    }
    let bound = cx.live.settings().server.idle_timeout_sec;
    let idle = async {
        if !bound.is_zero() {
            tokio::time::sleep(bound).await
        } else {
            std::future::pending().await
        }
    };
    let mut b = [0u8; 1];
    tokio::select! {
        r = stream.peek(&mut b) => match r {
            Ok(1) => Ok(b[0]),
            _ => Err(CloseReason::Peer),
        },
        _ = idle => Err(CloseReason::Idle),
        _ = close.cancelled() => Err(CloseReason::Shutdown),
    }
}

/// The request loop over a connection's read and write halves.
async fn serve_io<R, W>(
    cx: Arc<Context>,
    rd: R,
    mut wr: W,
    peer: Peer,
    limits: Arc<ConnLimits>,
    close: CancellationToken,
) -> CloseReason
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    // Its buffer exists only while a frame is being read: idle connections hold none.
    let mut rd = FrameReader::new(rd);
    let mut closing = close.is_cancelled();
    loop {
        // Once the node closes connections, a connection lingers briefly so that a request
        // already on its way still gets its answer (20) instead of a reset.
        let idle = if closing {
            Some(CLOSE_LINGER)
        } else {
            let bound = cx.live.settings().server.idle_timeout_sec;
            (!bound.is_zero()).then_some(bound)
        };
        // Wait for the next frame with `wait`, which is cancel-safe (bytes stay buffered),
        // so a close signal can never split a length prefix.
        let wait = async {
            let filled = match idle {
                Some(d) => match tokio::time::timeout(d, rd.wait()).await {
                    Ok(r) => r,
                    Err(_) if closing => return Err(CloseReason::Shutdown),
                    Err(_) => return Err(CloseReason::Idle),
                },
                None => rd.wait().await,
            };
            match filled {
                Ok(true) => Ok(()),
                _ => Err(CloseReason::Peer),
            }
        };
        tokio::select! {
            r = wait => if let Err(reason) = r { return reason },
            _ = close.cancelled(), if !closing => {
                closing = true;
                continue;
            }
        };
        // From its first byte on, a frame must arrive within frameReadTimeoutMs: a client that
        // starts a frame and stalls cannot hold its connection (or read budget) forever.
        let frame_deadline = Instant::now() + frame_timeout(&cx);
        let len = match tokio::time::timeout_at(frame_deadline, rd.read_i32()).await {
            Ok(Ok(l)) => l,
            Ok(Err(_)) => return CloseReason::Peer,
            Err(_) => return CloseReason::Idle,
        };
        if len <= 0 {
            let first = (len as u32 >> 24) as u8;
            if first == 0x80 || first == 0x82 {
                cx.metrics
                    .protocol_errors
                    .get_or_create(&Kind { kind: "unframed" })
                    .inc();
                if unframed_log_due(peer.ip()) {
                    tracing::warn!(peer = ?peer.addr, "unframed transport not supported");
                }
            } else {
                tracing::debug!(peer = ?peer.addr, len, "non-positive frame length");
            }
            return CloseReason::Protocol;
        }
        let len = len as usize;
        let max = cx.live.snapshot().proxy.carrera.max_read_buffer_bytes;
        if len > max {
            cx.metrics
                .protocol_errors
                .get_or_create(&Kind { kind: "oversize" })
                .inc();
            let skipped = tokio::time::timeout_at(frame_deadline, skip_oversized(&mut rd, len));
            let skipped = skipped.await.unwrap_or(Err(CloseReason::Idle));
            rd.release();
            match skipped {
                Ok(Some(reply)) => {
                    if let Err(reason) = write_reply(&cx, &mut wr, reply, &peer).await {
                        return reason;
                    }
                    continue;
                }
                Ok(None) => continue,
                Err(reason) => return reason,
            }
        }
        let (buf, permit) = match read_payload(&mut rd, len, &limits, frame_deadline).await {
            Ok(v) => v,
            Err(reason) => return reason,
        };
        // While the request runs (a broker round trip, often), the connection holds no buffer.
        rd.release();
        let start = Instant::now();
        // Boxed: a request in progress needs about 12 KB of future state; inline, every idle
        // connection's task would carry that much for good.
        let result = Box::pin(handle_frame(&cx, buf, start, &peer)).await;
        drop(permit);
        match result {
            FrameResult::Reply(b) => {
                if let Err(reason) = write_reply(&cx, &mut wr, b, &peer).await {
                    return reason;
                }
            }
            FrameResult::NoReply => {}
            FrameResult::Close => return CloseReason::Protocol,
        }
    }
}

/// Reads a frame payload in chunks, taking read budget only for bytes that arrived: a frame
/// announced but not sent holds nothing, and waiters queue for at most one chunk each.
async fn read_payload<R: AsyncRead + Unpin>(
    rd: &mut R,
    len: usize,
    limits: &ConnLimits,
    deadline: Instant,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), CloseReason> {
    let mut buf = BytesMut::with_capacity(len.min(READ_CHUNK));
    let mut permit: Option<OwnedSemaphorePermit> = None;
    while buf.len() < len {
        let chunk = (len - buf.len())
            .min(READ_CHUNK)
            .min(limits.inflight_budget);
        let acquire = limits
            .inflight_bytes
            .clone()
            .acquire_many_owned(chunk as u32);
        let p = match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(CloseReason::Shutdown),
            Err(_) => return Err(CloseReason::Idle),
        };
        match &mut permit {
            Some(held) => held.merge(p),
            None => permit = Some(p),
        }
        buf.reserve(chunk);
        let target = buf.len() + chunk;
        while buf.len() < target {
            let mut limited = (&mut *rd).take((target - buf.len()) as u64);
            match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(CloseReason::Peer),
                Ok(Ok(_)) => {}
                Err(_) => return Err(CloseReason::Idle),
            }
        }
    }
    Ok((buf.freeze(), permit))
}

fn frame_timeout(cx: &Context) -> Duration {
    cx.live
        .settings()
        .server
        .frame_read_timeout_ms
        .max(Duration::from_millis(1))
}

/// Writes one reply within `server.writeTimeoutMs` (0: no bound). A peer that stops reading
/// fills its socket buffers and would hold this connection's task, its frame buffer and its
/// read budget for good: past the bound the connection is closed; other connections do not
/// wait for it (each has its own task).
async fn write_reply<W: AsyncWrite + Unpin>(
    cx: &Context,
    wr: &mut W,
    b: Bytes,
    peer: &Peer,
) -> Result<(), CloseReason> {
    let bound = cx.live.settings().server.write_timeout_ms;
    let written = if bound.is_zero() {
        write_frame(wr, b).await
    } else {
        match tokio::time::timeout(bound, write_frame(wr, b)).await {
            Ok(r) => r,
            Err(_) => {
                let bound_ms = bound.as_millis();
                tracing::debug!(peer = ?peer.addr, bound_ms, "peer not reading its replies");
                return Err(CloseReason::WriteTimeout);
            }
        }
    };
    written.map_err(|e| {
        tracing::debug!(peer = ?peer.addr, error = %e, "reply not delivered");
        CloseReason::Peer
    })
}

async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, b: Bytes) -> std::io::Result<()> {
    wr.write_all(&b).await?;
    // A TLS stream may hold the record until flushed; for TCP this is a no-op.
    wr.flush().await
}

/// Reads the header of an oversized frame, discards the rest while streaming, answers 11.
async fn skip_oversized<R: AsyncRead + Unpin>(
    rd: &mut R,
    len: usize,
) -> Result<Option<Bytes>, CloseReason> {
    let peek = len.min(OVERSIZE_HEADER_PEEK);
    let mut head = BytesMut::zeroed(peek);
    rd.read_exact(&mut head)
        .await
        .map_err(|_| CloseReason::Peer)?;
    let head = head.freeze();
    let Ok((h, _)) = read_header(&head) else {
        tracing::debug!(len, "oversized frame with unreadable header");
        return Err(CloseReason::Protocol);
    };
    let rest = (len - peek) as u64;
    let copied = tokio::io::copy(&mut rd.take(rest), &mut tokio::io::sink())
        .await
        .map_err(|_| CloseReason::Peer)?;
    if copied < rest {
        return Err(CloseReason::Peer);
    }
    tracing::debug!(len, method = h.name_str(), "oversized frame answered 11");
    match reply_code(&h, Code::Illegal) {
        FrameResult::Reply(b) => Ok(Some(b)),
        FrameResult::NoReply => Ok(None),
        FrameResult::Close => Err(CloseReason::Protocol),
    }
}
