//! Process-wide state shared by the server, the handlers and the admin endpoints.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::settings::Settings;
use crate::config::snapshot::Snapshot;
use crate::writer::embedded::EmbeddedHandle;

/// Shared state of one running proxy.
pub struct App {
    /// carrera.yaml in force (swapped on SIGHUP).
    pub settings: ArcSwap<Settings>,
    /// `"<host>:<port>"`.
    pub node: String,
    /// Current configuration generation.
    pub config: ArcSwap<Snapshot>,
    /// The embedded cluster, in embedded mode.
    pub embedded: Option<EmbeddedHandle>,
    /// Set once shutdown begins: new requests answer 20.
    pub draining: AtomicBool,
    /// Set once the Thrift port is bound.
    pub listening: AtomicBool,
    /// Requests in progress.
    pub inflight: AtomicUsize,
    /// Woken when `inflight` drops to zero during a drain.
    pub idle: Notify,
    /// Open Thrift connections.
    pub connections: AtomicUsize,
    /// Process start.
    pub started: Instant,
    /// The delay service (single-node or cluster mode), once open.
    pub delay: OnceLock<crate::delay::service::DelayService>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Sampling of failure log lines.
    pub failures: crate::logging::FailureSampler,
    /// ZooKeeper session connected (ZooKeeper mode).
    pub zk_connected: AtomicBool,
    /// Delayed limiter retries pending (bounded by `limiterFailureRetryQueueSize`).
    pub limiter_retries: AtomicUsize,
    /// TLS and ACLs in force.
    pub security: crate::security::Security,
}

impl App {
    /// New state around a first configuration snapshot.
    pub fn new(
        settings: Settings,
        node: String,
        snapshot: Snapshot,
        embedded: Option<EmbeddedHandle>,
        security: crate::security::Security,
    ) -> Arc<App> {
        Arc::new(App {
            settings: ArcSwap::from_pointee(settings),
            node,
            config: ArcSwap::from_pointee(snapshot),
            embedded,
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            connections: AtomicUsize::new(0),
            started: Instant::now(),
            delay: OnceLock::new(),
            metrics: crate::metrics::Metrics::default(),
            failures: crate::logging::FailureSampler::default(),
            limiter_retries: AtomicUsize::new(0),
            zk_connected: AtomicBool::new(false),
            security,
        })
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks a request as started; the guard marks it finished.
    pub fn begin_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// Waits until no request is in progress, at most `bound`; true when drained.
    pub async fn wait_idle(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let notified = self.idle.notified();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// Decrements the in-flight count when a request finishes.
pub struct InflightGuard(Arc<App>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
