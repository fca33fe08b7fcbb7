//! Prometheus metrics (operations.md §5): lock-free counters and histograms behind label maps
//! that take a read lock on the hot path, rendered in text format 0.0.4 on scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Latency buckets in seconds (0.5 ms … 10 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Batch-size buckets (1, 2, 4, … 1024).
pub const SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value (seconds, or a plain number for size histograms).
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{braces} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// A family of values keyed by label values.
pub struct Family<K, V> {
    names: &'static [&'static str],
    map: RwLock<HashMap<K, Arc<V>>>,
    make: fn() -> V,
}

/// Label values of one series.
pub trait LabelValues: Clone + Eq + Hash {
    /// The values in label order.
    fn values(&self) -> Vec<String>;
}

impl LabelValues for () {
    fn values(&self) -> Vec<String> {
        Vec::new()
    }
}
impl LabelValues for (String,) {
    fn values(&self) -> Vec<String> {
        vec![self.0.clone()]
    }
}
impl LabelValues for (String, String) {
    fn values(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.clone()]
    }
}
impl LabelValues for (String, String, String) {
    fn values(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.clone(), self.2.clone()]
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl<K: LabelValues, V> Family<K, V> {
    /// A family with label `names`, creating values with `make`.
    pub fn new(names: &'static [&'static str], make: fn() -> V) -> Self {
        Family {
            names,
            map: RwLock::new(HashMap::new()),
            make,
        }
    }

    /// The series for `key`, created on first use.
    pub fn get(&self, key: K) -> Arc<V> {
        if let Some(v) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return v.clone();
        }
        let mut w = self.map.write().unwrap_or_else(|e| e.into_inner());
        w.entry(key)
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    fn series(&self) -> Vec<(String, Arc<V>)> {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, Arc<V>)> = m
            .iter()
            .map(|(k, v)| {
                let labels = self
                    .names
                    .iter()
                    .zip(k.values())
                    .map(|(n, val)| format!("{n}=\"{}\"", escape(&val)))
                    .collect::<Vec<_>>()
                    .join(",");
                (labels, v.clone())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl<K: LabelValues> Family<K, AtomicU64> {
    /// Adds `n` to the series of `key`.
    pub fn add(&self, key: K, n: u64) {
        self.get(key).fetch_add(n, Ordering::Relaxed);
    }

    /// Renders a counter family.
    pub fn render(&self, out: &mut String, name: &str, help: &str, kind: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in self.series() {
            let braces = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            let _ = writeln!(out, "{name}{braces} {}", v.load(Ordering::Relaxed));
        }
    }
}

impl<K: LabelValues> Family<K, Histogram> {
    /// Renders a histogram family.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, h) in self.series() {
            h.render(out, name, &labels);
        }
    }
}

/// Writes one unlabelled sample with its HELP and TYPE.
pub fn sample(out: &mut String, name: &str, help: &str, kind: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

type Counter1 = Family<(String,), AtomicU64>;
type Counter2 = Family<(String, String), AtomicU64>;
type Counter3 = Family<(String, String, String), AtomicU64>;

/// Every metric the proxy itself updates; scheduler and config values are read at scrape time.
pub struct Metrics {
    /// `pproxy_requests_total{method,topic,code}`.
    pub requests: Counter3,
    /// `pproxy_messages_total{topic,code}`.
    pub messages: Counter2,
    /// `pproxy_request_duration_seconds{method,topic}`.
    pub request_duration: Family<(String, String), Histogram>,
    /// `pproxy_broker_send_duration_seconds{backend,cluster}`.
    pub broker_duration: Family<(String, String), Histogram>,
    /// `pproxy_broker_sends_total{backend,cluster,outcome}`.
    pub broker_sends: Counter3,
    /// `pproxy_broker_retries_total{backend,cluster,reason}`.
    pub broker_retries: Counter3,
    /// `pproxy_route_refresh_total{cluster,result}`.
    pub route_refresh: Counter2,
    /// `pproxy_rate_limit_total{scope,topic,result}`.
    pub rate_limit: Counter3,
    /// `pproxy_rpc_batch_size`.
    pub rpc_batch_size: Family<(), Histogram>,
    /// `pproxy_batch_partial_total`.
    pub batch_partial: AtomicU64,
    /// `pproxy_connections_accepted_total`.
    pub conn_accepted: AtomicU64,
    /// `pproxy_connections_rejected_total`.
    pub conn_rejected: AtomicU64,
    /// `pproxy_connections_closed_total{reason}`.
    pub conn_closed: Counter1,
    /// `pproxy_frames_total{protocol}`.
    pub frames: Counter1,
    /// `pproxy_protocol_errors_total{kind}`.
    pub protocol_errors: Counter1,
    /// `pproxy_delay_adds_total{topic,type}`.
    pub delay_adds: Counter2,
    /// `pproxy_delay_cancels_total{topic,result}`.
    pub delay_cancels: Counter2,
    /// `pproxy_delay_fired_total{topic,result}`.
    pub delay_fired: Counter2,
    /// `pproxy_config_reloads_total{source,result}`.
    pub config_reloads: Counter2,
    /// `pproxy_acl_denied_total{method,principal,reason}`.
    pub acl_denied: Counter3,
    /// `pproxy_tls_connections_total{port,result}`.
    pub tls_connections: Counter2,
    /// `pproxy_admin_denied_total{reason}`.
    pub admin_denied: Counter1,
    /// `pproxy_zk_connected`: the ZooKeeper session is connected (ZooKeeper mode).
    pub zk_connected: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let lat = || Histogram::new(&LATENCY_BUCKETS);
        Metrics {
            requests: Family::new(&["method", "topic", "code"], || AtomicU64::new(0)),
            messages: Family::new(&["topic", "code"], || AtomicU64::new(0)),
            request_duration: Family::new(&["method", "topic"], lat),
            broker_duration: Family::new(&["backend", "cluster"], lat),
            broker_sends: Family::new(&["backend", "cluster", "outcome"], || AtomicU64::new(0)),
            broker_retries: Family::new(&["backend", "cluster", "reason"], || AtomicU64::new(0)),
            route_refresh: Family::new(&["cluster", "result"], || AtomicU64::new(0)),
            rate_limit: Family::new(&["scope", "topic", "result"], || AtomicU64::new(0)),
            rpc_batch_size: Family::new(&[], || Histogram::new(&SIZE_BUCKETS)),
            batch_partial: AtomicU64::new(0),
            conn_accepted: AtomicU64::new(0),
            conn_rejected: AtomicU64::new(0),
            conn_closed: Family::new(&["reason"], || AtomicU64::new(0)),
            frames: Family::new(&["protocol"], || AtomicU64::new(0)),
            protocol_errors: Family::new(&["kind"], || AtomicU64::new(0)),
            delay_adds: Family::new(&["topic", "type"], || AtomicU64::new(0)),
            delay_cancels: Family::new(&["topic", "result"], || AtomicU64::new(0)),
            delay_fired: Family::new(&["topic", "result"], || AtomicU64::new(0)),
            config_reloads: Family::new(&["source", "result"], || AtomicU64::new(0)),
            acl_denied: Family::new(&["method", "principal", "reason"], || AtomicU64::new(0)),
            tls_connections: Family::new(&["port", "result"], || AtomicU64::new(0)),
            admin_denied: Family::new(&["reason"], || AtomicU64::new(0)),
            zk_connected: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Renders the families this struct owns.
    pub fn render(&self, out: &mut String) {
        self.requests.render(
            out,
            "pproxy_requests_total",
            "Answered requests.",
            "counter",
        );
        self.messages.render(
            out,
            "pproxy_messages_total",
            "Per-message outcomes, batches included.",
            "counter",
        );
        self.request_duration.render(
            out,
            "pproxy_request_duration_seconds",
            "Frame read to reply.",
        );
        self.broker_duration.render(
            out,
            "pproxy_broker_send_duration_seconds",
            "One broker attempt.",
        );
        self.broker_sends.render(
            out,
            "pproxy_broker_sends_total",
            "Broker attempts by outcome.",
            "counter",
        );
        self.broker_retries.render(
            out,
            "pproxy_broker_retries_total",
            "Retries started.",
            "counter",
        );
        self.route_refresh.render(
            out,
            "pproxy_route_refresh_total",
            "Route or metadata refreshes.",
            "counter",
        );
        self.rate_limit.render(
            out,
            "pproxy_rate_limit_total",
            "Limiter decisions other than plain admission.",
            "counter",
        );
        self.rpc_batch_size
            .render(out, "pproxy_rpc_batch_size", "Messages per sendBatchSync.");
        let plain = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            sample(out, name, help, "counter", v.load(Ordering::Relaxed) as f64)
        };
        plain(
            out,
            "pproxy_batch_partial_total",
            "Batches answered non-zero after some messages were stored.",
            &self.batch_partial,
        );
        plain(
            out,
            "pproxy_connections_accepted_total",
            "Accepted connections.",
            &self.conn_accepted,
        );
        plain(
            out,
            "pproxy_connections_rejected_total",
            "Connections refused by maxConnections.",
            &self.conn_rejected,
        );
        self.conn_closed.render(
            out,
            "pproxy_connections_closed_total",
            "Closed connections by reason.",
            "counter",
        );
        self.frames.render(
            out,
            "pproxy_frames_total",
            "Decoded frames by protocol.",
            "counter",
        );
        self.protocol_errors.render(
            out,
            "pproxy_protocol_errors_total",
            "Protocol-level problems.",
            "counter",
        );
        self.delay_adds.render(
            out,
            "pproxy_delay_adds_total",
            "Accepted delay adds (new ids).",
            "counter",
        );
        self.delay_cancels.render(
            out,
            "pproxy_delay_cancels_total",
            "Delay cancels by result.",
            "counter",
        );
        self.delay_fired.render(
            out,
            "pproxy_delay_fired_total",
            "Delay fire attempts by result.",
            "counter",
        );
        self.config_reloads.render(
            out,
            "pproxy_config_reloads_total",
            "Configuration documents processed.",
            "counter",
        );
        self.acl_denied.render(
            out,
            "pproxy_acl_denied_total",
            "Requests refused by the ACLs (answered 13).",
            "counter",
        );
        self.tls_connections.render(
            out,
            "pproxy_tls_connections_total",
            "Connections on a TLS-enabled port by outcome.",
            "counter",
        );
        self.admin_denied.render(
            out,
            "pproxy_admin_denied_total",
            "Admin requests refused (403/401).",
            "counter",
        );
        gauge(
            out,
            "pproxy_zk_connected",
            "1 when the ZooKeeper session is connected.",
            f64::from(u8::from(self.zk_connected.load(Ordering::Relaxed))),
        );
    }
}

/// Renders one gauge sample.
pub fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    sample(out, name, help, "gauge", v)
}

/// Renders a histogram kept as per-bucket (non-cumulative) counts plus a final +Inf bucket.
/// Bounds and the sum are kept in integer units (ms, µs, counts); `unit` of them make one of
/// the exposed unit (1000 for ms shown as seconds).
pub fn raw_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    unit: f64,
    counts: &[AtomicU64],
    sum: &AtomicU64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0;
    for (b, c) in bounds.iter().zip(counts) {
        cum += c.load(Ordering::Relaxed);
        let le = *b as f64 / unit;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cum}");
    }
    if let Some(last) = counts.get(bounds.len()) {
        cum += last.load(Ordering::Relaxed);
    }
    let sum = sum.load(Ordering::Relaxed) as f64 / unit;
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {cum}\n{name}_sum {sum}\n{name}_count {cum}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.requests
            .add(("sendSync".into(), "orders".into(), "0".into()), 2);
        m.request_duration
            .get(("sendSync".into(), "orders".into()))
            .observe(0.003);
        m.request_duration
            .get(("sendSync".into(), "orders".into()))
            .observe(20.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out
            .contains("pproxy_requests_total{method=\"sendSync\",topic=\"orders\",code=\"0\"} 2"));
        assert!(out.contains("pproxy_request_duration_seconds_bucket{method=\"sendSync\",topic=\"orders\",le=\"0.002\"} 0"));
        assert!(out.contains("pproxy_request_duration_seconds_bucket{method=\"sendSync\",topic=\"orders\",le=\"0.005\"} 1"));
        assert!(out.contains("pproxy_request_duration_seconds_bucket{method=\"sendSync\",topic=\"orders\",le=\"+Inf\"} 2"));
        assert!(out.contains(
            "pproxy_request_duration_seconds_count{method=\"sendSync\",topic=\"orders\"} 2"
        ));
        assert!(out.contains("# TYPE pproxy_rpc_batch_size histogram"));
    }
}
