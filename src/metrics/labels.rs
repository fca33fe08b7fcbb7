//! The label sets of every family (operations.md §5). Values are `&'static str`, integers or
//! shared `Arc<str>` names, so counting a request clones at most a reference count.

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;

/// A topic label: an admitted topic's name (shared with its route), `carrera_heartbeat`, or
/// `_other` for everything else, so client input cannot grow the series without bound.
pub type Topic = Arc<str>;

/// The `_other` topic label.
pub fn other_topic() -> Topic {
    static OTHER: LazyLock<Topic> = LazyLock::new(|| Arc::from("_other"));
    OTHER.clone()
}

/// `pproxy_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    /// `sendSync`, `sendAsync`, `sendBatchSync`, `sendDelaySync`.
    pub method: &'static str,
    /// Topic label.
    pub topic: Topic,
    /// Numeric result code.
    pub code: i32,
}

/// `pproxy_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    /// Method name.
    pub method: &'static str,
    /// Topic label.
    pub topic: Topic,
}

/// `pproxy_messages_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Message {
    /// Topic label.
    pub topic: Topic,
    /// Numeric result code.
    pub code: i32,
}

/// The broker families keyed by cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Broker {
    /// `kafka` or `rocketmq`.
    pub backend: &'static str,
    /// Cluster name.
    pub cluster: Arc<str>,
}

/// `pproxy_broker_sends_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerOutcome {
    /// `kafka` or `rocketmq`.
    pub backend: &'static str,
    /// Cluster name.
    pub cluster: Arc<str>,
    /// `ok`, `retriable`, `error`, `timeout`.
    pub outcome: &'static str,
}

/// `pproxy_broker_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Retry {
    /// `kafka` or `rocketmq`.
    pub backend: &'static str,
    /// Cluster name.
    pub cluster: Arc<str>,
    /// Why the attempt before it failed: `unreachable` or `retriable`.
    pub reason: &'static str,
}

/// `pproxy_route_refresh_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refresh {
    /// Cluster name.
    pub cluster: Arc<str>,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// The RocketMQ batch histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Cluster {
    /// Cluster name.
    pub cluster: Arc<str>,
}

/// `pproxy_rate_limit_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Limit {
    /// `topic` or `node`.
    pub scope: &'static str,
    /// Topic label.
    pub topic: Topic,
    /// `warn`, `refused`, `retried`, `retry_refused`.
    pub result: &'static str,
}

/// Families with one `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Reason.
    pub reason: &'static str,
}

/// `pproxy_frames_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Protocol {
    /// `compact` or `binary`.
    pub protocol: &'static str,
}

/// `pproxy_protocol_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// What went wrong.
    pub kind: &'static str,
}

/// `pproxy_delay_adds_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DelayAdd {
    /// Topic label.
    pub topic: Topic,
    /// Delay type (2 one-shot, 3 loop, 4 loop with expiry ...).
    pub r#type: i64,
}

/// `pproxy_delay_cancels_total` and `pproxy_delay_fired_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicResult {
    /// Topic label.
    pub topic: Topic,
    /// Result.
    pub result: &'static str,
}

/// `pproxy_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reload {
    /// Where the document came from.
    pub source: &'static str,
    /// `applied` or `rejected`.
    pub result: &'static str,
}

/// `pproxy_acl_denied_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AclDenied {
    /// Method name.
    pub method: &'static str,
    /// The configured principal, or `anonymous`.
    pub principal: Arc<str>,
    /// Why.
    pub reason: &'static str,
}

/// `pproxy_tls_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tls {
    /// `thrift` or `admin`.
    pub port: &'static str,
    /// Outcome.
    pub result: &'static str,
}

/// `pproxy_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Build {
    /// Package version.
    pub version: &'static str,
    /// Git commit.
    pub commit: &'static str,
}
