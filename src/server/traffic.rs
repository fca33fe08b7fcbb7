//! What the Thrift port carries now: open connections, requests in progress, and whether the
//! node is still taking new ones (the drain reads and sets this; `/ready` and `/status` show it).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::scrape::gauge;

/// Connection and request counts of one running proxy, and its draining flag.
pub struct Traffic {
    draining: AtomicBool,
    listening: AtomicBool,
    inflight: AtomicUsize,
    /// Woken when `inflight` drops to zero.
    idle: Notify,
    connections: AtomicUsize,
    /// Connections closed since start.
    closed: AtomicU64,
    started: Instant,
}

impl Traffic {
    /// Nothing open yet, not listening, not draining; uptime counts from now.
    pub fn new() -> Arc<Traffic> {
        Arc::new(Traffic {
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            connections: AtomicUsize::new(0),
            closed: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Whether the node is draining: new requests answer 20.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Step 1 of the drain: from now on new requests answer 20 and `/ready` 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the Thrift port is bound.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Marks the Thrift port as bound.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// Marks a request as started; the guard marks it finished.
    pub fn begin_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// Requests in progress.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Waits until no request is in progress, at most `bound`; true when drained.
    pub async fn wait_idle(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            // Registered before the check, so a drop to zero in between is not missed.
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight() == 0;
            }
        }
    }

    /// Open Thrift connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection as open; the guard counts it closed.
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// Connections closed since start.
    pub fn closed_total(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Time since the process started serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Decrements the in-flight count when a request finishes.
pub struct InflightGuard(Arc<Traffic>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let before = self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a request finished that never started");
        if before == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Decrements the connection count when a connection closes.
pub struct ConnectionGuard(Arc<Traffic>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let before = self.0.connections.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "a connection closed that never opened");
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// `/metrics` gauges of the Thrift port, read at scrape time.
pub struct Gauges(pub Arc<Traffic>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("traffic::Gauges")
    }
}

impl Collector for Gauges {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let inflight = self.0.inflight() as i64;
        gauge(
            &mut e,
            "pproxy_inflight_requests",
            "Requests in progress.",
            inflight,
        )?;
        let open = self.0.connections() as i64;
        gauge(
            &mut e,
            "pproxy_connections",
            "Open Thrift connections.",
            open,
        )
    }
}
