//! Quick throughput ratio: pproxy `sendSync` against a direct rdkafka producer making the same
//! acknowledged sends with the same concurrency, on the same real Kafka, in the same run.
//! (The full benchmark with histograms is its own tool; this gives one honest figure.)
//!
//! The same for RocketMQ (backend `rocketmq`): a direct rocketmq-client-rust producer doing
//! `send_to_queue` on the same real broker against pproxy.
//!
//! cargo run --release --example quick_ratio -- [kafka=127.0.0.1:9092] [conns=32] [secs=10] [bytes=100] [backend=kafka|rocketmq] [namesrv=127.0.0.1:9876]

#![recursion_limit = "256"]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pproxy::client::Client;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Message, Protocol};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn arg(i: usize, default: &str) -> String {
    std::env::args()
        .nth(i)
        .unwrap_or_else(|| default.to_string())
}

fn cpu_ticks(pid: u32) -> u64 {
    // utime + stime of a process, in clock ticks.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Lets the senders run for `secs`, stops them, and returns the successes per second.
async fn window(
    secs: u64,
    stop: &AtomicBool,
    count: &AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> f64 {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let el = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / el
}

async fn direct(kafka: &str, topic: &str, conns: usize, secs: u64, body: Bytes) -> f64 {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (p, count, stop, body, topic) = (
            p.clone(),
            count.clone(),
            stop.clone(),
            body.clone(),
            topic.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            while !stop.load(Ordering::Relaxed) {
                let r = FutureRecord::to(&topic).payload(&body[..]).key(&key);
                if p.send(r, Duration::from_secs(5)).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    window(secs, &stop, &count, tasks).await
}

async fn via_proxy(addr: &str, topic: &str, conns: usize, secs: u64, body: Bytes) -> (f64, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (count, errors, stop, body, topic, addr) = (
            count.clone(),
            errors.clone(),
            stop.clone(),
            body.clone(),
            topic.to_string(),
            addr.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, Protocol::Compact, Duration::from_secs(10))
                .await
                .expect("connect");
            let m = Message {
                topic: Some(topic),
                key: Some(format!("k{i}")),
                body: Some(body),
                partition_id: -2,
                ..Default::default()
            };
            let call = Call::SendSync(Some(m), 5000);
            while !stop.load(Ordering::Relaxed) {
                match c.call(&call).await {
                    Ok(Reply::Result { code: 0, .. }) => count.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let rate = window(secs, &stop, &count, tasks).await;
    (rate, errors.load(Ordering::Relaxed))
}

static RMQ_OWNER: std::sync::LazyLock<rocketmq_runtime::RuntimeOwner> =
    std::sync::LazyLock::new(|| {
        rocketmq_runtime::RuntimeOwner::plan(rocketmq_runtime::RuntimeConfig {
            thread_name: "rmq-direct".into(),
            ..Default::default()
        })
        .expect("plan")
        .build()
        .expect("runtime")
    });

/// The direct RocketMQ peer: one producer, `conns` tasks each sending synchronously to a random
/// queue of the topic's route, as pproxy does for random-partition messages.
async fn direct_rmq(ns: &str, topic: &str, conns: usize, secs: u64, body: Bytes) -> f64 {
    use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig, DefaultMQProducer};
    use rocketmq_model::common::message::message_single::Message as RMessage;
    let rt = ClientRuntime::try_new(
        RMQ_OWNER.root_context().component("direct"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::noop(),
    )
    .expect("client runtime");
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group(format!("direct_{}", uuid::Uuid::new_v4().simple()))
        .name_server_addr(ns.to_string())
        .retry_times_when_send_failed(0)
        .build();
    p.start().await.expect("start");
    let queues = p.fetch_publish_message_queues(topic).await.expect("route");
    let p = Arc::new(p);
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (p, count, stop, body, topic, queues) = (
            p.clone(),
            count.clone(),
            stop.clone(),
            body.clone(),
            topic.to_string(),
            queues.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            while !stop.load(Ordering::Relaxed) {
                let m = RMessage::builder()
                    .topic(topic.as_str())
                    .key(key.as_str())
                    .body(body.clone())
                    .build_unchecked();
                let q = queues[rand::random_range(0..queues.len())].clone();
                if p.send_to_queue_with_timeout(m, q, 5000).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    window(secs, &stop, &count, tasks).await
}

#[tokio::main]
async fn main() {
    let kafka = arg(1, "127.0.0.1:9092");
    let conns: usize = arg(2, "32").parse().expect("conns");
    let secs: u64 = arg(3, "10").parse().expect("secs");
    let size: usize = arg(4, "100").parse().expect("bytes");
    let backend = arg(5, "kafka");
    let ns = arg(6, "127.0.0.1:9876");
    let rmq = backend == "rocketmq";
    let body = Bytes::from(vec![b'x'; size]);
    let topic = format!("quick-ratio-{}", uuid::Uuid::new_v4().simple());
    if rmq {
        let st = Command::new("scripts/stack.sh")
            .args(["rocketmq-topic", &topic, "4"])
            .status()
            .expect("stack.sh rocketmq-topic");
        assert!(st.success(), "create the RocketMQ topic");
    }
    if !rmq {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .create()
            .expect("admin");
        admin
            .create_topics(
                [&NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topic");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let dir = tempfile::tempdir().expect("tmp");
    let doc = if rmq {
        format!(
            r#"{{"brokerClusters":["R"],"carreraConfiguration":{{"useRocketmq":true,
           "rocketmqConfigurationMap":{{"R":{{"namesrvAddrs":["{ns}"]}}}},
           "defaultTopicInfoConf":{{"topics":[{{"topic":"{topic}","topicUnits":[{{"brokerCluster":"R"}}]}}]}}}}}}"#
        )
    } else {
        format!(
            r#"{{"brokerClusters":["K"],"carreraConfiguration":{{"useKafka":true,
           "kafkaConfigurationMap":{{"K":{{"bootstrapServers":["{kafka}"],"acks":"all"}}}},
           "defaultTopicInfoConf":{{"topics":[{{"topic":"{topic}","topicUnits":[{{"brokerCluster":"K"}}]}}]}}}}}}"#
        )
    };
    std::fs::write(dir.path().join("local.json"), doc).expect("write");
    std::fs::write(
        dir.path().join("c.yaml"),
        "host: 127.0.0.1\nport: 19713\nadminPort: 0\nlocalConfig: local.json\nserver:\n  bindAddr: 127.0.0.1\n",
    )
    .expect("write");
    let bin = std::env::var("PPROXY_BIN").unwrap_or_else(|_| "target/release/pproxy".into());
    let bin = std::fs::canonicalize(&bin).expect("pproxy binary (build --release first)");
    let mut child = Command::new(bin)
        .args(["run", "-c", "c.yaml"])
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pproxy");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let addr = "127.0.0.1:19713";

    println!("backend={backend} conns={conns} secs={secs} body={size}B kafka={kafka} namesrv={ns}");
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let d = if rmq {
            direct_rmq(&ns, &topic, conns, secs, body.clone()).await
        } else {
            direct(&kafka, &topic, conns, secs, body.clone()).await
        };
        let t0 = cpu_ticks(child.id());
        let (p, errors) = via_proxy(addr, &topic, conns, secs, body.clone()).await;
        let ticks = cpu_ticks(child.id()) - t0;
        let cpu_us_per_msg = ticks as f64 * 10_000.0 / (p * secs as f64);
        println!(
            "round {round}: direct {d:.0} msg/s, pproxy {p:.0} msg/s (errors {errors}), ratio {:.2}, pproxy CPU {cpu_us_per_msg:.1} us/msg",
            p / d
        );
        ratios.push(p / d);
    }
    println!(
        "ratio mean {:.2}",
        ratios.iter().sum::<f64>() / ratios.len() as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}
