//! A real Prometheus server (Debian's `prometheus` package, installed by `scripts/setup.sh
//! --tests`) scraping pproxy admin ports every second, optionally with rule files loaded and
//! evaluated every second; its HTTP API read back by the tests.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pproxy::proto::{Call, DelayMessage, Message};

use super::{admin_get, call, delay_cancel, free_port, msg, unknown_method_frame, Proxy};

/// Whether a family is a histogram: Prometheus names its series `<family>_count`, ...
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counter or gauge: one series name.
    Plain,
    /// A histogram: `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// Every family pproxy declares: operations.md §5, then the few it adds (store health, the
/// wheel's loaded and in-flight counts, refused connections). The one list both metrics tests
/// check (tests/hermetic/metrics.rs on the page, tests/stack/prometheus.rs through Prometheus).
pub const FAMILIES: &[(&str, Kind)] = &[
    ("pproxy_build_info", Kind::Plain),
    ("pproxy_requests_total", Kind::Plain),
    ("pproxy_messages_total", Kind::Plain),
    ("pproxy_request_duration_seconds", Kind::Histogram),
    ("pproxy_inflight_requests", Kind::Plain),
    ("pproxy_broker_send_duration_seconds", Kind::Histogram),
    ("pproxy_broker_sends_total", Kind::Plain),
    ("pproxy_broker_retries_total", Kind::Plain),
    ("pproxy_route_refresh_total", Kind::Plain),
    ("pproxy_rate_limit_total", Kind::Plain),
    ("pproxy_rpc_batch_size", Kind::Histogram),
    ("pproxy_autobatch_size", Kind::Histogram),
    ("pproxy_autobatch_bytes", Kind::Histogram),
    ("pproxy_batch_partial_total", Kind::Plain),
    ("pproxy_connections", Kind::Plain),
    ("pproxy_connections_accepted_total", Kind::Plain),
    ("pproxy_connections_rejected_total", Kind::Plain),
    ("pproxy_connections_closed_total", Kind::Plain),
    ("pproxy_frames_total", Kind::Plain),
    ("pproxy_protocol_errors_total", Kind::Plain),
    ("pproxy_delay_adds_total", Kind::Plain),
    ("pproxy_delay_cancels_total", Kind::Plain),
    ("pproxy_delay_pending", Kind::Plain),
    ("pproxy_delay_loaded", Kind::Plain),
    ("pproxy_delay_inflight", Kind::Plain),
    ("pproxy_delay_fired_total", Kind::Plain),
    ("pproxy_delay_skipped_total", Kind::Plain),
    ("pproxy_delay_dead_letters", Kind::Plain),
    ("pproxy_delay_fire_lateness_seconds", Kind::Histogram),
    ("pproxy_delay_fired_through_lag_seconds", Kind::Plain),
    ("pproxy_delay_commit_duration_seconds", Kind::Histogram),
    ("pproxy_delay_commit_group_size", Kind::Histogram),
    ("pproxy_delay_store_errors_total", Kind::Plain),
    ("pproxy_delay_store_failed", Kind::Plain),
    ("pproxy_delay_store_reopens_total", Kind::Plain),
    ("pproxy_config_reloads_total", Kind::Plain),
    ("pproxy_config_generation", Kind::Plain),
    ("pproxy_zk_connected", Kind::Plain),
    ("pproxy_topics_admitted", Kind::Plain),
];

/// A family's series name as Prometheus queries it (a histogram by its `_count`).
pub fn series(family: &str, kind: Kind) -> String {
    match kind {
        Kind::Plain => family.to_string(),
        Kind::Histogram => format!("{family}_count"),
    }
}

/// A Prometheus server on a free port, stopped on drop.
pub struct Prometheus {
    child: Child,
    /// HTTP port of its API.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:<target>` every second.
    pub fn start(target: u16) -> Prometheus {
        Self::start_with_rules(&[target], None)
    }

    /// Starts Prometheus scraping every port of `targets` (job `pproxy`) every second, with the
    /// rule file `rules` (its text) evaluated every second.
    pub fn start_with_rules(targets: &[u16], rules: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("'127.0.0.1:{t}'")).collect();
        let rule_files = match rules {
            Some(text) => {
                let path = dir.path().join("rules.yml");
                std::fs::write(&path, text).expect("rules.yml");
                format!("rule_files:\n  - {}\n", path.display())
            }
            None => String::new(),
        };
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: pproxy\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .expect("prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port, dir };
        let until = Instant::now() + Duration::from_secs(30);
        while admin_get(port, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < until,
                "prometheus not ready in 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The JSON answer of an instant query.
    pub fn query(&self, query: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let (status, body) = admin_get(self.port, &path).expect("query");
        assert_eq!(status, 200, "{query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"))
    }

    /// The series an instant query returns (empty when none).
    pub fn series(&self, query: &str) -> Vec<serde_json::Value> {
        self.query(query)["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The health and last error of the scrape targets.
    pub fn targets(&self) -> String {
        admin_get(self.port, "/api/v1/targets")
            .map(|r| r.1)
            .unwrap_or_default()
    }

    /// The active alerts (`/api/v1/alerts`): pending and firing.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (_, body) = admin_get(self.port, "/api/v1/alerts").expect("alerts");
        let v: serde_json::Value = serde_json::from_str(&body).expect("alerts json");
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts called `name` whose labels include every (label, value) of `labels`.
    pub fn alerts_named(&self, name: &str, labels: &[(&str, &str)]) -> Vec<serde_json::Value> {
        self.alerts()
            .into_iter()
            .filter(|a| {
                a["labels"]["alertname"] == name
                    && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
            })
            .collect()
    }

    /// The rule groups as Prometheus loaded them (`/api/v1/rules`), with health and last error.
    pub fn rules(&self) -> serde_json::Value {
        let (_, body) = admin_get(self.port, "/api/v1/rules").expect("rules");
        serde_json::from_str(&body).expect("rules json")
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a query parameter.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Traffic that moves most families of operations.md §5 on a node forwarding the topics `kafka`
/// (Kafka) and `rmq` (RocketMQ) with the delay topic `delay`: single, batch and concurrent sends
/// (the concurrent ones dispatched as RocketMQ batches), a delay add that fires and one that is
/// cancelled, a protocol error and a configuration reload. Limiter and failure cases are each
/// test's own.
pub async fn everyday_traffic(p: &Proxy, kafka: &str, rmq: &str, delay: &str) {
    let mut c = p.client().await;
    for topic in [kafka, rmq] {
        for _ in 0..3 {
            let code = call(&mut c, &Call::SendSync(Some(msg(topic, b"x")), 5000)).await;
            assert_eq!(code.0, 0, "{topic}: {code:?}");
        }
    }
    let batch = vec![msg(kafka, b"1"), msg(kafka, b"2")];
    assert_eq!(call(&mut c, &Call::SendBatchSync(batch)).await.0, 0);
    // Concurrent sends to one RocketMQ queue: lanes dispatch them (autobatch histograms).
    let sends = (0..8).map(|i| async move {
        let mut c = p.client().await;
        let m = Message {
            partition_id: 0,
            ..msg(rmq, format!("c{i}").as_bytes())
        };
        call(&mut c, &Call::SendSync(Some(m), 5000)).await.0
    });
    let codes = futures::future::join_all(sends).await;
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(call(&mut c, &delay_once(delay, now + 300, 1)).await.0, 0);
    let (code, _, id) = call(&mut c, &delay_once(delay, now + 600_000, 1)).await;
    assert_eq!(code, 0);
    let id = id.expect("delay id");
    assert_eq!(call(&mut c, &delay_cancel(delay, &id)).await.0, 0);
    // A protocol error on its own connection (which the proxy then closes or answers).
    let mut raw = TcpStream::connect(&p.addr).expect("connect");
    raw.write_all(&unknown_method_frame()).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(raw);
    p.hup();
}

/// A delay add of a one-shot due at `due` ms with a body of `len` bytes.
pub fn delay_once(topic: &str, due: i64, len: usize) -> Call {
    Call::SendDelaySync(
        Some(DelayMessage {
            topic: Some(topic.into()),
            body: Some(Bytes::from(vec![b'd'; len])),
            action: 1,
            timestamp: due,
            dmsgtype: 2,
            ..Default::default()
        }),
        3000,
    )
}
