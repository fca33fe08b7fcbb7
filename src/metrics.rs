//! Prometheus metrics (operations.md §5): lock-free counters and histograms behind label maps
//! that take a read lock on the hot path, rendered in text format 0.0.4 on scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
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
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    sample(out, name, help, "gauge", v)
}

/// Renders the whole `/metrics` page: the proxy's own families plus gauges read now.
pub fn render_page(app: &crate::app::App) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# HELP pproxy_build_info Build information.\n# TYPE pproxy_build_info gauge\npproxy_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("PPROXY_GIT_COMMIT")
    );
    app.metrics.render(&mut out);
    gauge(
        &mut out,
        "pproxy_inflight_requests",
        "Requests in progress.",
        app.inflight.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "pproxy_connections",
        "Open Thrift connections.",
        app.connections.load(Ordering::Relaxed) as f64,
    );
    let snap = app.config.load();
    gauge(
        &mut out,
        "pproxy_config_generation",
        "Current configuration generation.",
        snap.generation as f64,
    );
    gauge(
        &mut out,
        "pproxy_zk_connected",
        "1 when the ZooKeeper session is connected.",
        0.0,
    );
    gauge(
        &mut out,
        "pproxy_topics_admitted",
        "Admitted topics.",
        snap.topics.all().len() as f64,
    );
    if let Some(d) = app.delay.get() {
        d.render_metrics(&mut out);
    }
    out
}

/// Single-node mode: the scheduler's families.
pub(crate) fn scheduler_metrics(out: &mut String, s: &scheduler::Scheduler) {
    {
        let st = s.stats();
        let (loaded, inflight) = s.loaded_and_inflight();
        gauge(
            out,
            "pproxy_delay_pending",
            "Pending delay records.",
            st.pending.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            "pproxy_delay_loaded",
            "Delay records in the in-memory wheel.",
            loaded as f64,
        );
        gauge(
            out,
            "pproxy_delay_inflight",
            "Delay fires in flight.",
            inflight as f64,
        );
        gauge(
            out,
            "pproxy_delay_dead_letters",
            "Dead letters kept.",
            s.dead_count() as f64,
        );
        sample(
            out,
            "pproxy_delay_skipped_total",
            "Loop occurrences skipped by catch-up.",
            "counter",
            st.skipped.load(Ordering::Relaxed) as f64,
        );
        let cs = s.commit_stats();
        let lag = crate::delay::service::fired_through_lag_ms(s) as f64 / 1000.0;
        gauge(
            out,
            "pproxy_delay_fired_through_lag_seconds",
            "Now minus the fired-through watermark.",
            lag,
        );
        sample(
            out,
            "pproxy_delay_store_errors_total",
            "Delay storage failures.",
            "counter",
            cs.errors.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            "pproxy_delay_store_failed",
            "1 from an I/O error of the delay store until it is reopened (adds and cancels answer 10).",
            f64::from(u8::from(s.store_failed())),
        );
        sample(
            out,
            "pproxy_delay_store_reopens_total",
            "Reopens of the delay store after an I/O error.",
            "counter",
            s.store_reopens() as f64,
        );
        let ms_bounds: Vec<f64> = scheduler::LATENESS_BUCKETS_MS
            .iter()
            .map(|b| *b as f64 / 1000.0)
            .collect();
        raw_histogram(
            out,
            "pproxy_delay_fire_lateness_seconds",
            "Hand-off time minus due time.",
            &ms_bounds,
            &st.lateness,
            st.lateness_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        let us_bounds: Vec<f64> = scheduler::GROUP_US_BUCKETS
            .iter()
            .map(|b| *b as f64 / 1e6)
            .collect();
        raw_histogram(
            out,
            "pproxy_delay_commit_duration_seconds",
            "Group commit including flush.",
            &us_bounds,
            &cs.group_us_hist,
            cs.group_us_sum.load(Ordering::Relaxed) as f64 / 1e6,
        );
        let size_bounds: Vec<f64> = scheduler::GROUP_SIZE_BUCKETS
            .iter()
            .map(|b| *b as f64)
            .collect();
        raw_histogram(
            out,
            "pproxy_delay_commit_group_size",
            "Mutations per group commit.",
            &size_bounds,
            &cs.group_size_hist,
            cs.group_size_sum.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Renders a histogram kept as per-bucket (non-cumulative) counts plus a final +Inf bucket.
fn raw_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    counts: &[AtomicU64],
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0;
    for (b, c) in bounds.iter().zip(counts) {
        cum += c.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
    }
    if let Some(last) = counts.get(bounds.len()) {
        cum += last.load(Ordering::Relaxed);
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {cum}\n{name}_sum {sum}\n{name}_count {cum}"
    );
}

/// Cluster mode: owned partitions, journal appends and what owners applied.
pub(crate) fn cluster_metrics(out: &mut String, c: &crate::delay::cluster::Cluster) {
    let owned = c.owned.lock().unwrap_or_else(|e| e.into_inner());
    let active = owned.values().filter(|o| o.may_fire()).count();
    let pending: i64 = owned
        .values()
        .filter_map(|o| o.engine())
        .map(|e| e.stats().pending.load(Ordering::Relaxed))
        .sum();
    drop(owned);
    sample(
        out,
        "pproxy_delay_cluster_partitions_owned",
        "Journal partitions this node owns and fires.",
        "gauge",
        active as f64,
    );
    sample(
        out,
        "pproxy_delay_pending",
        "Pending delay records (of the partitions this node owns).",
        "gauge",
        pending as f64,
    );
    let st = &c.stats;
    out.push_str("# HELP pproxy_delay_cluster_journal_appends_total Journal records acknowledged by the broker.\n# TYPE pproxy_delay_cluster_journal_appends_total counter\n");
    for (i, kind) in ["add", "cancel", "fired", "claim"].iter().enumerate() {
        out.push_str(&format!(
            "pproxy_delay_cluster_journal_appends_total{{kind=\"{kind}\"}} {}\n",
            st.appends[i].load(Ordering::Relaxed)
        ));
    }
    for (name, help, v) in [
        (
            "pproxy_delay_cluster_journal_append_errors_total",
            "Journal appends that failed.",
            &st.append_errors,
        ),
        (
            "pproxy_delay_cluster_applied_total",
            "Journal records applied to owned partitions.",
            &st.applied,
        ),
        (
            "pproxy_delay_cluster_foreign_fired_total",
            "Fired markers of an older owner seen after this node's claim.",
            &st.foreign_fired,
        ),
        (
            "pproxy_delay_cluster_partitions_gained_total",
            "Partitions assigned to this node.",
            &st.gained,
        ),
        (
            "pproxy_delay_cluster_partitions_lost_total",
            "Partitions revoked from this node.",
            &st.lost,
        ),
        (
            "pproxy_delay_cluster_tombstones_total",
            "Tombstones appended to the journal for finished ids.",
            &st.tombstones,
        ),
    ] {
        sample(out, name, help, "counter", v.load(Ordering::Relaxed) as f64);
    }
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
