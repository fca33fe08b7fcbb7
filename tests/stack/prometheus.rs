//! A real Prometheus server (Debian's `prometheus` package, installed by `scripts/setup.sh
//! --tests`) scrapes a pproxy forwarding to the real Kafka and RocketMQ; its HTTP API must then
//! answer a query for every family of operations.md §5 with data (issue 18).

use std::time::{Duration, Instant};

use crate::common::prometheus::{everyday_traffic, series, Prometheus, FAMILIES};
use crate::common::*;
use pproxy::proto::Call;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_family() {
    let _stack = STACK.read().await;
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

    everyday_traffic(&p, &t.kafka, &t.rmq, &t.delay).await;
    // A 1-message-per-second topic: a burst meets the limiter (warned or refused).
    let mut c = p.client().await;
    for _ in 0..6 {
        call(&mut c, &Call::SendSync(Some(msg(&t.limited, b"x")), 3000)).await;
    }

    let until = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = FAMILIES.iter().map(|&(f, k)| series(f, k)).collect();
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
            prom.targets()
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
        prom.targets().contains(r#""health":"up""#),
        "{}",
        prom.targets()
    );
}
