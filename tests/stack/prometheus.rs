//! A real Prometheus server (Debian's `prometheus` package, installed by `scripts/setup.sh
//! --tests`) scrapes a pproxy forwarding to the real Kafka and RocketMQ; its HTTP API must then
//! answer a query for every family of operations.md §5 with data (issue 18).

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use pproxy::proto::{Call, DelayMessage, Message};

/// Every family of operations.md §5, as Prometheus names its series (histograms by `_count`).
const FAMILIES: &[&str] = &[
    "pproxy_build_info",
    "pproxy_requests_total",
    "pproxy_messages_total",
    "pproxy_request_duration_seconds_count",
    "pproxy_inflight_requests",
    "pproxy_broker_send_duration_seconds_count",
    "pproxy_broker_sends_total",
    "pproxy_broker_retries_total",
    "pproxy_route_refresh_total",
    "pproxy_rate_limit_total",
    "pproxy_rpc_batch_size_count",
    "pproxy_autobatch_size_count",
    "pproxy_autobatch_bytes_count",
    "pproxy_batch_partial_total",
    "pproxy_connections",
    "pproxy_connections_accepted_total",
    "pproxy_connections_rejected_total",
    "pproxy_connections_closed_total",
    "pproxy_frames_total",
    "pproxy_protocol_errors_total",
    "pproxy_delay_adds_total",
    "pproxy_delay_cancels_total",
    "pproxy_delay_pending",
    "pproxy_delay_loaded",
    "pproxy_delay_inflight",
    "pproxy_delay_fired_total",
    "pproxy_delay_skipped_total",
    "pproxy_delay_dead_letters",
    "pproxy_delay_fire_lateness_seconds_count",
    "pproxy_delay_fired_through_lag_seconds",
    "pproxy_delay_commit_duration_seconds_count",
    "pproxy_delay_commit_group_size_count",
    "pproxy_delay_store_errors_total",
    "pproxy_config_reloads_total",
    "pproxy_config_generation",
    "pproxy_zk_connected",
    "pproxy_topics_admitted",
];

/// A Prometheus server on a free port, stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:<target>` every second.
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pproxy\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
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
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while admin_get(port, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < until, "prometheus not ready in 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The JSON answer of an instant query (`query` must be URL-safe).
    fn query(&self, query: &str) -> serde_json::Value {
        let (status, body) =
            admin_get(self.port, &format!("/api/v1/query?query={query}")).expect("query");
        assert_eq!(status, 200, "{query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"))
    }

    /// The health and last error of the scrape target.
    fn target(&self) -> String {
        admin_get(self.port, "/api/v1/targets")
            .map(|r| r.1)
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local config with a Kafka and a RocketMQ cluster: an ordinary topic on each, a delay topic,
/// and a topic limited to 1 message per second.
fn config(kafka: &str, ns: &str, t: &Topics) -> String {
    let unit = |cluster: &str, tps: u32| {
        format!(r#"[{{"brokerCluster":"{cluster}","proxies":{{}},"maxTps":{tps}}}]"#)
    };
    let topic = |name: &str, cluster: &str, tps: u32, flags: &str| {
        format!(
            r#"{{"topic":"{name}"{flags},"topicUnits":{}}}"#,
            unit(cluster, tps)
        )
    };
    let topics = [
        topic(&t.kafka, "K_test", 100_000, ""),
        topic(&t.rmq, "R_test", 100_000, ""),
        topic(&t.delay, "K_test", 100_000, r#","delayTopic":true"#),
        topic(&t.limited, "K_test", 1, ""),
    ];
    let names: Vec<String> = [&t.kafka, &t.rmq, &t.delay, &t.limited]
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    format!(
        r#"{{"instance":"local","proxyCluster":"P_test","brokerClusters":["K_test","R_test"],
            "topics":[{}],
            "carreraConfiguration":{{"useKafka":true,"kafkaProducers":1,"useRocketmq":true,"rocketmqProducers":1,"useRequestLimiter":true,
              "kafkaConfigurationMap":{{"K_test":{{"bootstrapServers":["{kafka}"],"acks":"all"}}}},
              "rocketmqConfigurationMap":{{"R_test":{{"namesrvAddrs":["{ns}"]}}}},
              "defaultTopicInfoConf":{{"topics":[{}]}}}}}}"#,
        names.join(","),
        topics.join(",")
    )
}

struct Topics {
    kafka: String,
    rmq: String,
    delay: String,
    limited: String,
}

/// One framed compact call of a method the proxy does not have (a protocol error).
fn unknown_method_frame() -> Vec<u8> {
    let name = b"noSuchMethod";
    let mut payload = vec![0x82, 0x21, 0x01, name.len() as u8];
    payload.extend_from_slice(name);
    payload.push(0x00);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_family() {
    if !tool_available(
        "prometheus",
        "Debian's prometheus package (scripts/setup.sh --tests)",
    ) {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(ns) = crate::common::rmq::namesrv() else {
        return;
    };
    let t = Topics {
        kafka: unique_topic("pk"),
        rmq: unique_topic("pr"),
        delay: unique_topic("pd"),
        limited: unique_topic("pl"),
    };
    create_topic(&kafka, &t.kafka, 2).await;
    create_topic(&kafka, &t.delay, 1).await;
    create_topic(&kafka, &t.limited, 1).await;
    crate::common::rmq::create_topic(&t.rmq, 2);
    let p = Proxy::start_with_files(
        "localConfig: local.json\n",
        &[("local.json", config(&kafka, &ns, &t))],
    );
    let prom = Prometheus::start(p.admin_port);

    let mut c = p.client().await;
    for topic in [&t.kafka, &t.rmq] {
        for _ in 0..3 {
            let code = call(&mut c, &Call::SendSync(Some(msg(topic, b"x")), 5000)).await;
            assert_eq!(code.0, 0, "{topic}: {code:?}");
        }
    }
    let batch = vec![msg(&t.kafka, b"1"), msg(&t.kafka, b"2")];
    assert_eq!(call(&mut c, &Call::SendBatchSync(batch)).await.0, 0);
    // Concurrent sends to one RocketMQ queue: lanes dispatch them (autobatch histograms).
    let sends = (0..8).map(|i| {
        let (p, topic) = (&p, t.rmq.clone());
        async move {
            let mut c = p.client().await;
            let m = Message {
                partition_id: 0,
                ..msg(&topic, format!("c{i}").as_bytes())
            };
            call(&mut c, &Call::SendSync(Some(m), 5000)).await.0
        }
    });
    assert!(futures::future::join_all(sends)
        .await
        .iter()
        .all(|c| *c == 0));
    // A 1-message-per-second topic: a burst meets the limiter (warned or refused).
    for _ in 0..6 {
        call(&mut c, &Call::SendSync(Some(msg(&t.limited, b"x")), 3000)).await;
    }
    // A delay add that fires, and one that is cancelled.
    let now = chrono::Utc::now().timestamp_millis();
    let add = |due: i64| DelayMessage {
        topic: Some(t.delay.clone()),
        body: Some(Bytes::from_static(b"d")),
        action: 1,
        timestamp: due,
        dmsgtype: 2,
        ..Default::default()
    };
    assert_eq!(
        call(&mut c, &Call::SendDelaySync(Some(add(now + 300)), 3000))
            .await
            .0,
        0
    );
    let (code, _, id) = call(&mut c, &Call::SendDelaySync(Some(add(now + 600_000)), 3000)).await;
    assert_eq!(code, 0);
    let id = id.expect("delay id");
    assert_eq!(call(&mut c, &delay_cancel(&t.delay, &id)).await.0, 0);
    // A protocol error on its own connection (which the proxy then closes or answers).
    let mut raw = TcpStream::connect(&p.addr).expect("connect");
    raw.write_all(&unknown_method_frame()).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(raw);
    // A configuration reload.
    p.hup();

    let until = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<&str> = FAMILIES.to_vec();
    while !missing.is_empty() {
        missing.retain(|family| {
            let v = prom.query(family);
            v["data"]["result"].as_array().is_none_or(|r| r.is_empty())
        });
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "Prometheus has no data for {missing:?}\ntargets: {}",
            prom.target()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The values moved the way the traffic says.
    let value = |q: &str| -> f64 {
        let v = prom.query(q);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("sum(pproxy_route_refresh_total)") >= 2.0,
        "Kafka and RocketMQ routes"
    );
    assert!(value("sum(pproxy_rate_limit_total)") >= 1.0);
    assert!(value("sum(pproxy_protocol_errors_total)") >= 1.0);
    assert!(value("sum(pproxy_autobatch_size_count)") >= 1.0);
    assert!(value("sum(pproxy_delay_cancels_total)") >= 1.0);
    assert!(value("sum(pproxy_config_reloads_total)") >= 1.0);
    // Prometheus negotiated OpenMetrics (it asks for it first) and the target is healthy.
    assert!(
        prom.target().contains(r#""health":"up""#),
        "{}",
        prom.target()
    );
}
