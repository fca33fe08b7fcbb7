//! The Thrift server: listener, per-connection frame loop, and method dispatch.

pub mod connection;
pub mod dispatch;
pub mod listener;
pub mod reader;
pub mod traffic;
pub mod trim;

use std::sync::Arc;

use crate::delay::DelayService;
use crate::forward::Forwarder;
use crate::live::LiveConfig;
use crate::logging::FailureSampler;
use crate::metrics::Metrics;
use crate::security::Security;
use traffic::Traffic;

/// What the server's connections and handlers use.
pub struct Context {
    /// The configuration in force: settings for limits and timeouts, the snapshot per request.
    pub live: Arc<LiveConfig>,
    /// Connection and request counts, and the draining flag.
    pub traffic: Arc<Traffic>,
    /// The proxy's own metric families.
    pub metrics: Arc<Metrics>,
    /// TLS and ACLs in force.
    pub security: Arc<Security>,
    /// Sampling of failure log lines.
    pub failures: Arc<FailureSampler>,
    /// Normal sends.
    pub forwarder: Arc<Forwarder>,
    /// Delay adds and cancels.
    pub delay: Arc<DelayService>,
}
