//! Accept loop: connection cap, socket options, shutdown (wire.md §2).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::connection::{serve, CloseReason, ConnLimits};
use super::Context;
use crate::lifecycle::{Group, Tasks};
use crate::metrics::labels::Reason;

/// Binds the Thrift port with the configured backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts connections until `stop` is cancelled; each is served by a task of `conns`, which
/// `close` tells to end.
pub async fn run(
    cx: Arc<Context>,
    listener: TcpListener,
    tasks: Tasks,
    conns: Group,
    stop: CancellationToken,
    close: CancellationToken,
) {
    let budget = cx
        .live
        .settings()
        .server
        .max_inflight_bytes
        .clamp(1, Semaphore::MAX_PERMITS);
    let limits = Arc::new(ConnLimits {
        inflight_bytes: Arc::new(Semaphore::new(budget)),
        inflight_budget: budget.min(u32::MAX as usize),
    });
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if cx.traffic.connections() >= cx.live.settings().server.max_connections {
            cx.metrics.conn_rejected.inc();
            tracing::debug!(%peer, "connection refused: maxConnections");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let open = cx.traffic.open_connection();
        cx.metrics.conn_accepted.inc();
        let cx2 = cx.clone();
        let limits = limits.clone();
        let close = close.clone();
        conns.spawn(&tasks, async move {
            let reason = serve(cx2.clone(), stream, limits, close).await;
            tracing::trace!(%peer, ?reason, "connection closed");
            let label = match reason {
                CloseReason::Peer => "peer",
                CloseReason::Idle => "idle",
                CloseReason::Protocol => "protocol",
                CloseReason::Shutdown => "shutdown",
                CloseReason::WriteTimeout => "write_timeout",
            };
            cx2.metrics
                .conn_closed
                .get_or_create(&Reason { reason: label })
                .inc();
            drop(open);
        });
    }
}
