//! Prometheus metrics (operations.md §5), each family declared once below with its name, help
//! and label set, on prometheus-client. Values the proxy reads rather than counts (connections,
//! delay queue, configuration) are collectors registered by their owners; `scrape` renders the
//! registry in the format the scraper asks for.

mod histogram;
pub mod labels;
pub mod scrape;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

pub use histogram::{Histogram, BYTES_BUCKETS, LATENCY_BUCKETS, SIZE_BUCKETS};
use labels::Topic;

/// A family of latency histograms.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Registers `metric` under `name` and hands it back, so each family is named where it is made.
/// Counter names are given without `_total`: the encoders add it.
fn reg<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// A latency family with the buckets of operations.md §5.
fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(Histogram::latency)
}

/// Every family the proxy itself updates.
pub struct Metrics {
    /// `pproxy_requests_total{method,topic,code}`.
    pub requests: Family<labels::Request, Counter>,
    /// `pproxy_messages_total{topic,code}`.
    pub messages: Family<labels::Message, Counter>,
    /// `pproxy_request_duration_seconds{method,topic}`.
    pub request_duration: LatencyFamily<labels::Method>,
    /// The broker families; writers take their cluster's series from it.
    pub broker: BrokerMetrics,
    /// `pproxy_rate_limit_total{scope,topic,result}`.
    pub rate_limit: Family<labels::Limit, Counter>,
    /// `pproxy_rpc_batch_size`.
    pub rpc_batch_size: Histogram,
    /// `pproxy_batch_partial_total`.
    pub batch_partial: Counter,
    /// `pproxy_connections_accepted_total`.
    pub conn_accepted: Counter,
    /// `pproxy_connections_rejected_total`.
    pub conn_rejected: Counter,
    /// `pproxy_connections_closed_total{reason}`.
    pub conn_closed: Family<labels::Reason, Counter>,
    /// `pproxy_frames_total{protocol}`.
    pub frames: Family<labels::Protocol, Counter>,
    /// `pproxy_protocol_errors_total{kind}`.
    pub protocol_errors: Family<labels::Kind, Counter>,
    /// `pproxy_delay_adds_total{topic,type}`.
    pub delay_adds: Family<labels::DelayAdd, Counter>,
    /// `pproxy_delay_cancels_total{topic,result}`.
    pub delay_cancels: Family<labels::TopicResult, Counter>,
    /// `pproxy_delay_fired_total{topic,result}`.
    pub delay_fired: Family<labels::TopicResult, Counter>,
    /// `pproxy_config_reloads_total{source,result}`.
    pub config_reloads: Family<labels::Reload, Counter>,
    /// `pproxy_acl_denied_total{method,principal,reason}`.
    pub acl_denied: Family<labels::AclDenied, Counter>,
    /// `pproxy_tls_connections_total{port,result}`.
    pub tls_connections: Family<labels::Tls, Counter>,
    /// `pproxy_admin_denied_total{reason}`.
    pub admin_denied: Family<labels::Reason, Counter>,
    /// `pproxy_zk_connected`: 1 while the ZooKeeper session is connected (ZooKeeper mode).
    pub zk_connected: Gauge,
}

impl Metrics {
    /// Every family, registered in `r`.
    pub fn new(r: &mut Registry) -> Metrics {
        let build: Family<labels::Build, Gauge> = reg(
            r,
            "pproxy_build_info",
            "Build information.",
            Family::default(),
        );
        build
            .get_or_create(&labels::Build {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("PPROXY_GIT_COMMIT"),
            })
            .set(1);
        Metrics {
            requests: reg(
                r,
                "pproxy_requests",
                "Answered requests.",
                Family::default(),
            ),
            messages: reg(
                r,
                "pproxy_messages",
                "Per-message outcomes, batches included.",
                Family::default(),
            ),
            request_duration: reg(
                r,
                "pproxy_request_duration_seconds",
                "Frame read to reply.",
                latency_family(),
            ),
            broker: BrokerMetrics {
                duration: reg(
                    r,
                    "pproxy_broker_send_duration_seconds",
                    "One broker attempt.",
                    latency_family(),
                ),
                sends: reg(
                    r,
                    "pproxy_broker_sends",
                    "Broker attempts by outcome.",
                    Family::default(),
                ),
                retries: reg(
                    r,
                    "pproxy_broker_retries",
                    "Retries started.",
                    Family::default(),
                ),
                route_refresh: reg(
                    r,
                    "pproxy_route_refresh",
                    "RocketMQ route or Kafka metadata refreshes.",
                    Family::default(),
                ),
                batch_size: reg(
                    r,
                    "pproxy_autobatch_size",
                    "Messages per RocketMQ batch request.",
                    Family::new_with_constructor((|| Histogram::new(&SIZE_BUCKETS)) as fn() -> _),
                ),
                batch_bytes: reg(
                    r,
                    "pproxy_autobatch_bytes",
                    "Body bytes per RocketMQ batch request.",
                    Family::new_with_constructor((|| Histogram::new(&BYTES_BUCKETS)) as fn() -> _),
                ),
            },
            rate_limit: reg(
                r,
                "pproxy_rate_limit",
                "Limiter decisions other than plain admission.",
                Family::default(),
            ),
            rpc_batch_size: reg(
                r,
                "pproxy_rpc_batch_size",
                "Messages per sendBatchSync.",
                Histogram::new(&SIZE_BUCKETS),
            ),
            batch_partial: reg(
                r,
                "pproxy_batch_partial",
                "Batches answered non-zero after some messages were stored.",
                Counter::default(),
            ),
            conn_accepted: reg(
                r,
                "pproxy_connections_accepted",
                "Accepted connections.",
                Counter::default(),
            ),
            conn_rejected: reg(
                r,
                "pproxy_connections_rejected",
                "Connections refused by maxConnections.",
                Counter::default(),
            ),
            conn_closed: reg(
                r,
                "pproxy_connections_closed",
                "Closed connections by reason.",
                Family::default(),
            ),
            frames: reg(
                r,
                "pproxy_frames",
                "Decoded frames by protocol.",
                Family::default(),
            ),
            protocol_errors: reg(
                r,
                "pproxy_protocol_errors",
                "Protocol-level problems.",
                Family::default(),
            ),
            delay_adds: reg(
                r,
                "pproxy_delay_adds",
                "Accepted delay adds (new ids).",
                Family::default(),
            ),
            delay_cancels: reg(
                r,
                "pproxy_delay_cancels",
                "Delay cancels by result.",
                Family::default(),
            ),
            delay_fired: reg(
                r,
                "pproxy_delay_fired",
                "Delay fire attempts by result.",
                Family::default(),
            ),
            config_reloads: reg(
                r,
                "pproxy_config_reloads",
                "Configuration documents processed.",
                Family::default(),
            ),
            acl_denied: reg(
                r,
                "pproxy_acl_denied",
                "Requests refused by the ACLs (answered 13).",
                Family::default(),
            ),
            tls_connections: reg(
                r,
                "pproxy_tls_connections",
                "Connections on a TLS-enabled port by outcome.",
                Family::default(),
            ),
            admin_denied: reg(
                r,
                "pproxy_admin_denied",
                "Admin requests refused (403/401).",
                Family::default(),
            ),
            zk_connected: reg(
                r,
                "pproxy_zk_connected",
                "1 when the ZooKeeper session is connected.",
                Gauge::default(),
            ),
        }
    }

    /// Families registered nowhere (unit tests and tools that never serve `/metrics`).
    pub fn unregistered() -> Metrics {
        Metrics::new(&mut Registry::default())
    }

    /// Counts one answered request and its duration.
    pub fn request(&self, method: &'static str, topic: Topic, code: i32, seconds: f64) {
        let key = labels::Method { method, topic };
        self.request_duration.get_or_create(&key).observe(seconds);
        let labels::Method { method, topic } = key;
        self.requests
            .get_or_create(&labels::Request {
                method,
                topic,
                code,
            })
            .inc();
    }

    /// Counts one message's outcome.
    pub fn message(&self, topic: Topic, code: i32) {
        self.messages
            .get_or_create(&labels::Message { topic, code })
            .inc();
    }
}

/// The broker families; a writer resolves its cluster's series once with [`BrokerMetrics::cluster`].
#[derive(Clone)]
pub struct BrokerMetrics {
    duration: LatencyFamily<labels::Broker>,
    sends: Family<labels::BrokerOutcome, Counter>,
    retries: Family<labels::Retry, Counter>,
    route_refresh: Family<labels::Refresh, Counter>,
    batch_size: Family<labels::Cluster, Histogram, fn() -> Histogram>,
    batch_bytes: Family<labels::Cluster, Histogram, fn() -> Histogram>,
}

impl BrokerMetrics {
    /// Families registered nowhere (tests).
    pub fn unregistered() -> BrokerMetrics {
        Metrics::unregistered().broker
    }

    /// The series of one cluster.
    pub fn cluster(&self, backend: &'static str, cluster: &str) -> ClusterMetrics {
        let cluster: Arc<str> = Arc::from(cluster);
        let outcome = |outcome| {
            self.sends.get_or_create_owned(&labels::BrokerOutcome {
                backend,
                cluster: cluster.clone(),
                outcome,
            })
        };
        let retry = |reason| {
            self.retries.get_or_create_owned(&labels::Retry {
                backend,
                cluster: cluster.clone(),
                reason,
            })
        };
        let refresh = |result| {
            self.route_refresh.get_or_create_owned(&labels::Refresh {
                cluster: cluster.clone(),
                result,
            })
        };
        let by_cluster = labels::Cluster {
            cluster: cluster.clone(),
        };
        ClusterMetrics {
            duration: self.duration.get_or_create_owned(&labels::Broker {
                backend,
                cluster: cluster.clone(),
            }),
            sends: [
                outcome("ok"),
                outcome("retriable"),
                outcome("error"),
                outcome("timeout"),
            ],
            retries: [retry("unreachable"), retry("retriable")],
            refresh: [refresh("ok"), refresh("failed")],
            batch_size: self.batch_size.get_or_create_owned(&by_cluster),
            batch_bytes: self.batch_bytes.get_or_create_owned(&by_cluster),
        }
    }
}

/// How one broker attempt ended, as `pproxy_broker_sends_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored.
    Ok,
    /// A fast failure worth retrying.
    Retriable,
    /// Any other failure.
    Error,
    /// No outcome before the deadline.
    Timeout,
}

/// One cluster's broker series, resolved when its writer is built: counting touches atomics only.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    duration: Histogram,
    sends: [Counter; 4],
    retries: [Counter; 2],
    refresh: [Counter; 2],
    batch_size: Histogram,
    batch_bytes: Histogram,
}

impl ClusterMetrics {
    /// Series registered nowhere (tests).
    pub fn unregistered() -> ClusterMetrics {
        BrokerMetrics::unregistered().cluster("kafka", "test")
    }

    /// One broker attempt (or pipelined chain) took `seconds`.
    pub fn attempt(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// One message's attempt ended with `outcome`.
    pub fn sent(&self, outcome: SendOutcome) {
        self.sends[outcome as usize].inc();
    }

    /// A retry starts; `unreachable` when the broker could not be reached.
    pub fn retry(&self, unreachable: bool) {
        self.retries[usize::from(!unreachable)].inc();
    }

    /// A route or metadata refresh finished.
    pub fn route_refresh(&self, ok: bool) {
        self.refresh[usize::from(!ok)].inc();
    }

    /// A batch request of `messages` carrying `bytes` of bodies was sent.
    pub fn batch(&self, messages: usize, bytes: usize) {
        self.batch_size.observe(messages as f64);
        self.batch_bytes.observe(bytes as f64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::unregistered()
    }
}

#[cfg(test)]
mod tests {
    use super::scrape::{render, Format};
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms_in_both_formats() {
        let mut r = Registry::default();
        let m = Metrics::new(&mut r);
        let orders: Topic = Arc::from("orders");
        m.request("sendSync", orders.clone(), 0, 0.003);
        m.request("sendSync", orders, 0, 20.0);
        let out = render(&r, Format::Prometheus);
        assert!(
            out.contains("# TYPE pproxy_requests_total counter"),
            "{out}"
        );
        assert!(out
            .contains("pproxy_requests_total{method=\"sendSync\",topic=\"orders\",code=\"0\"} 2"));
        assert!(out.contains("pproxy_request_duration_seconds_bucket{le=\"0.002\",method=\"sendSync\",topic=\"orders\"} 0")
            || out.contains("pproxy_request_duration_seconds_bucket{method=\"sendSync\",topic=\"orders\",le=\"0.002\"} 0"), "{out}");
        assert!(out.contains("le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains(
            "pproxy_request_duration_seconds_count{method=\"sendSync\",topic=\"orders\"} 2"
        ));
        assert!(out.contains("# TYPE pproxy_rpc_batch_size histogram"));
        assert!(out.contains("pproxy_build_info{version="), "{out}");
        assert!(!out.contains("# EOF"));
        let om = render(&r, Format::OpenMetrics);
        assert!(om.contains("# TYPE pproxy_requests counter"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn a_cluster_counts_into_its_own_series() {
        let mut r = Registry::default();
        let m = Metrics::new(&mut r);
        let c = m.broker.cluster("rocketmq", "R1");
        c.sent(SendOutcome::Timeout);
        c.retry(false);
        c.route_refresh(true);
        c.batch(3, 300);
        let out = render(&r, Format::Prometheus);
        for want in [
            "pproxy_broker_sends_total{backend=\"rocketmq\",cluster=\"R1\",outcome=\"timeout\"} 1",
            "pproxy_broker_retries_total{backend=\"rocketmq\",cluster=\"R1\",reason=\"retriable\"} 1",
            "pproxy_route_refresh_total{cluster=\"R1\",result=\"ok\"} 1",
            "pproxy_autobatch_size_count{cluster=\"R1\"} 1",
            "pproxy_autobatch_bytes_sum{cluster=\"R1\"} 300",
        ] {
            assert!(out.contains(want), "{want} missing:\n{out}");
        }
    }
}
