//! ZooKeeper mode against the real ZooKeeper and Kafka from scripts/stack.sh: DDMQ documents
//! admit and remove topics while traffic flows, the on-disk cache starts a node while ZooKeeper
//! is down, and changes made during the outage apply on reconnect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::rmq;
use pproxy::proto::Call;

use crate::common::*;
use zookeeper_client as zk;

const ROOT: &str = "/carrera/v4/config";

async fn client(addr: &str) -> zk::Client {
    let c = zk::Client::connect(addr)
        .await
        .expect("connect to ZooKeeper");
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for p in [
        "/carrera",
        "/carrera/v4",
        ROOT,
        &format!("{ROOT}/pproxy"),
        &format!("{ROOT}/topic"),
    ] {
        match c.create(p, b"default", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("create {p}: {e}"),
        }
    }
    c
}

async fn put(c: &zk::Client, path: &str, data: &str) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match c.create(path, data.as_bytes(), &opts).await {
        Ok(_) => {}
        Err(zk::Error::NodeExists) => {
            c.set_data(path, data.as_bytes(), None)
                .await
                .expect("set_data");
        }
        Err(e) => panic!("create {path}: {e}"),
    }
}

fn proxy_doc(node: &str, kafka: &str, topics: &[&str]) -> String {
    let list: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    // Keys in alphabetical order and numbers as strings, as the console writes them.
    format!(
        r#"{{"brokerClusters":["K"],"carreraConfiguration":{{"kafkaConfigurationMap":{{"K":{{"acks":"all","bootstrapServers":["{kafka}"]}}}},"maxTps":"100000","useKafka":true}},"instance":"{node}","proxyCluster":"P_test","topics":[{}]}}"#,
        list.join(",")
    )
}

fn topic_doc(node: &str) -> String {
    topic_doc_on(node, "K")
}

fn topic_doc_on(node: &str, cluster: &str) -> String {
    format!(
        r#"{{"topicUnits":[{{"brokerCluster":"{cluster}","maxTps":1000,"proxies":{{"P_test":["{node}"]}},"totalMaxTps":1000}}]}}"#
    )
}

/// A proxy document with Kafka cluster K and, when `rocketmq` is set, RocketMQ cluster R.
fn proxy_doc_rmq(node: &str, kafka: &str, rocketmq: Option<&str>, topics: &[&str]) -> String {
    let list: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    let rmq = rocketmq.map_or(String::new(), |ns| {
        format!(
            r#","rocketmqConfigurationMap":{{"R":{{"namesrvAddrs":["{ns}"]}}}},"useRocketmq":true"#
        )
    });
    format!(
        r#"{{"brokerClusters":["K","R"],"carreraConfiguration":{{"kafkaConfigurationMap":{{"K":{{"acks":"all","bootstrapServers":["{kafka}"]}}}},"maxTps":"100000","useKafka":true{rmq}}},"instance":"{node}","proxyCluster":"P_test","topics":[{}]}}"#,
        list.join(",")
    )
}

fn stack(args: &[&str]) {
    let st = std::process::Command::new(repo_path("scripts/stack.sh"))
        .args(args)
        .status()
        .expect("run stack.sh");
    assert!(st.success(), "stack.sh {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_drive_admission_cache_and_outage() {
    // Stops ZooKeeper: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(zk_addr) = zookeeper() else {
        return;
    };
    let (t1, t2) = (unique_topic("zk1"), unique_topic("zk2"));
    create_topic(&kafka, &t1, 2).await;
    create_topic(&kafka, &t2, 2).await;
    let (port, admin) = (free_port(), free_port());
    let node = format!("127.0.0.1:{port}");
    let c = client(&zk_addr).await;
    put(
        &c,
        &format!("{ROOT}/pproxy/{node}"),
        &proxy_doc(&node, &kafka, &[&t1]),
    )
    .await;
    put(&c, &format!("{ROOT}/topic/{t1}"), &topic_doc(&node)).await;
    put(&c, &format!("{ROOT}/topic/{t2}"), &topic_doc(&node)).await;

    let yaml =
        format!("zookeeperAddr: {zk_addr}\nzk:\n  startupWaitMs: 2000\n  resyncIntervalSec: 2\n");
    let p = Proxy::start_on(port, admin, &yaml, &[], tempfile::tempdir().expect("tmp"));
    assert_eq!(send_code(&p, &t1).await, 0, "whitelisted and bound");
    assert_eq!(send_code(&p, &t2).await, 13, "not whitelisted");
    let (_, status) = p.http_get("/status").expect("status");
    assert!(status.contains(r#""configSource":"zk""#), "{status}");
    let (_, metrics) = p.http_get("/metrics").expect("metrics");
    assert!(metrics.contains("pproxy_zk_connected 1"), "connected");

    // Whitelist t2: admitted while traffic flows.
    put(
        &c,
        &format!("{ROOT}/pproxy/{node}"),
        &proxy_doc(&node, &kafka, &[&t1, &t2]),
    )
    .await;
    assert!(
        eventually_code(&p, &t2, 0, Duration::from_secs(10)).await,
        "t2 admitted after the whitelist change"
    );
    // Deleting its topic document un-admits it.
    c.delete(&format!("{ROOT}/topic/{t2}"), None)
        .await
        .expect("delete");
    assert!(
        eventually_code(&p, &t2, 13, Duration::from_secs(10)).await,
        "t2 removed after its document was deleted"
    );
    assert_eq!(send_code(&p, &t1).await, 0);
    let dir = p.into_dir();
    assert!(
        dir.path().join("data/config-cache/pproxy.json").exists(),
        "cache written"
    );

    // ZooKeeper down: a restart serves from the cache.
    drop(c);
    stack(&["down", "zookeeper"]);
    let p = Proxy::start_on(port, admin, &yaml, &[], dir);
    let served = send_code(&p, &t1).await;
    let (_, status) = p.http_get("/status").expect("status");
    // Bring ZooKeeper back before asserting, so a failure does not leave it down for other tests.
    stack(&["up", "zookeeper"]);
    assert_eq!(served, 0, "served from the cache");
    assert!(status.contains(r#""configSource":"cache""#), "{status}");
    // A change made right away applies once the node reconnects.
    let c = client(&zk_addr).await;
    put(&c, &format!("{ROOT}/topic/{t2}"), &topic_doc(&node)).await;
    assert!(
        eventually_code(&p, &t2, 0, Duration::from_secs(30)).await,
        "change made during the outage applied after reconnect"
    );
    let (_, metrics) = p.http_get("/metrics").expect("metrics");
    assert!(metrics.contains("pproxy_zk_connected 1"), "reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rocketmq_cluster_appears_and_disappears_while_traffic_flows() {
    // Stops ZooKeeper: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let Some(zk_addr) = zookeeper() else {
        return;
    };
    let (tk, tr) = (unique_topic("zkk"), unique_topic("zkr"));
    create_topic(&kafka, &tk, 2).await;
    rmq::create_topic(&tr, 2);
    let (port, admin) = (free_port(), free_port());
    let node = format!("127.0.0.1:{port}");
    let c = client(&zk_addr).await;
    let pnode = format!("{ROOT}/pproxy/{node}");
    put(&c, &pnode, &proxy_doc_rmq(&node, &kafka, None, &[&tk, &tr])).await;
    put(&c, &format!("{ROOT}/topic/{tk}"), &topic_doc_on(&node, "K")).await;
    put(&c, &format!("{ROOT}/topic/{tr}"), &topic_doc_on(&node, "R")).await;
    let yaml =
        format!("zookeeperAddr: {zk_addr}\nzk:\n  startupWaitMs: 2000\n  resyncIntervalSec: 2\n");
    let p = Proxy::start_on(port, admin, &yaml, &[], tempfile::tempdir().expect("tmp"));
    assert_eq!(
        send_code(&p, &tr).await,
        21,
        "bound cluster R has no configuration yet"
    );

    // Kafka traffic runs through every change below, ZooKeeper outage included.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut kc = p.client().await;
    let traffic = {
        let (stop, ok, bad, tk) = (stop.clone(), ok.clone(), bad.clone(), tk.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = msg(&tk, format!("k-{i}").as_bytes());
                i += 1;
                match call(&mut kc, &Call::SendSync(Some(m), 3000)).await.0 {
                    0 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    put(
        &c,
        &pnode,
        &proxy_doc_rmq(&node, &kafka, Some(&ns), &[&tk, &tr]),
    )
    .await;
    assert!(
        eventually_code(&p, &tr, 0, Duration::from_secs(20)).await,
        "R appeared: its topic is served"
    );
    // ZooKeeper stops while the node serves: the last configuration keeps serving.
    drop(c);
    stack(&["down", "zookeeper"]);
    let during = send_code(&p, &tr).await;
    let before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kafka_during = ok.load(Ordering::Relaxed) - before;
    stack(&["up", "zookeeper"]);
    assert_eq!(during, 0, "RocketMQ topic served during the outage");
    assert!(
        kafka_during > 0,
        "Kafka traffic kept flowing during the outage"
    );
    // After reconnect, R disappears: its topic answers 21, Kafka is untouched.
    let c = client(&zk_addr).await;
    put(&c, &pnode, &proxy_doc_rmq(&node, &kafka, None, &[&tk, &tr])).await;
    assert!(
        eventually_code(&p, &tr, 21, Duration::from_secs(30)).await,
        "R removed: 21"
    );
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic task");
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no Kafka request failed");
    let sent = ok.load(Ordering::Relaxed) as usize;
    let got = consume(&kafka, &tk, sent, Duration::from_secs(20));
    assert_eq!(got.len(), sent, "every acknowledged Kafka message arrived");
    let rgot = rmq::consume(&ns, &tr, 1, Duration::from_secs(20)).await;
    assert!(!rgot.is_empty(), "the RocketMQ sends arrived");
}

/// Issue #7 part 4: a 60 s ZooKeeper outage under load. Serving continues with the last
/// configuration; a change written as soon as ZooKeeper is back applies after the reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_second_outage_under_load() {
    // Stops ZooKeeper: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(zk_addr) = zookeeper() else {
        return;
    };
    let (t1, t2) = (unique_topic("zko1"), unique_topic("zko2"));
    create_topic(&kafka, &t1, 2).await;
    create_topic(&kafka, &t2, 2).await;
    let (port, admin) = (free_port(), free_port());
    let node = format!("127.0.0.1:{port}");
    let c = client(&zk_addr).await;
    let pnode = format!("{ROOT}/pproxy/{node}");
    put(&c, &pnode, &proxy_doc(&node, &kafka, &[&t1])).await;
    put(&c, &format!("{ROOT}/topic/{t1}"), &topic_doc(&node)).await;
    put(&c, &format!("{ROOT}/topic/{t2}"), &topic_doc(&node)).await;
    let yaml =
        format!("zookeeperAddr: {zk_addr}\nzk:\n  startupWaitMs: 2000\n  resyncIntervalSec: 2\n");
    let p = Proxy::start_on(port, admin, &yaml, &[], tempfile::tempdir().expect("tmp"));
    assert_eq!(send_code(&p, &t1).await, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for k in 0..4 {
        let mut kc = p.client().await;
        let (stop, ok, bad, t1) = (stop.clone(), ok.clone(), bad.clone(), t1.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = msg(&t1, format!("o{k}-{i}").as_bytes());
                i += 1;
                match call(&mut kc, &Call::SendSync(Some(m), 3000)).await.0 {
                    0 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    drop(c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack(&["down", "zookeeper"]);
    let down_at = std::time::Instant::now();
    let before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let served_during = ok.load(Ordering::Relaxed) - before;
    let (_, metrics) = p.http_get("/metrics").expect("metrics");
    stack(&["up", "zookeeper"]);
    let outage = down_at.elapsed();
    assert!(
        metrics.contains("pproxy_zk_connected 0"),
        "the outage was noticed"
    );
    // Written the moment ZooKeeper is back: applied once the node has reconnected.
    let c = client(&zk_addr).await;
    let back = std::time::Instant::now();
    put(&c, &pnode, &proxy_doc(&node, &kafka, &[&t1, &t2])).await;
    assert!(
        eventually_code(&p, &t2, 0, Duration::from_secs(60)).await,
        "change applied after reconnect"
    );
    let applied = back.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("traffic");
    }
    let (okn, badn) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    println!(
        "zookeeper outage {:.1} s: {served_during} requests answered 0 during it, {okn} in all, \
         {badn} not 0; change applied {:.2} s after ZooKeeper was back",
        outage.as_secs_f64(),
        applied.as_secs_f64()
    );
    assert!(served_during > 1000, "serving continued: {served_during}");
    assert_eq!(badn, 0, "no request failed during the outage");
    // Plus the one probe sent before the traffic started.
    let got = consume(&kafka, &t1, okn as usize + 1, Duration::from_secs(30));
    assert_eq!(
        got.len(),
        okn as usize + 1,
        "every acknowledged message stored"
    );
}

/// `pproxy check-config` in ZooKeeper mode reads this node's documents once and prints what
/// they admit (exit 0); with ZooKeeper unreachable it exits 3 (operations.md §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reads_zookeeper_once() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(zk_addr) = zookeeper() else {
        return;
    };
    let topic = unique_topic("zkcheck");
    let port = free_port();
    let node = format!("127.0.0.1:{port}");
    let c = client(&zk_addr).await;
    put(
        &c,
        &format!("{ROOT}/pproxy/{node}"),
        &proxy_doc(&node, &kafka, &[&topic]),
    )
    .await;
    put(&c, &format!("{ROOT}/topic/{topic}"), &topic_doc(&node)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let check = |zk: &str| {
        let yaml = dir.path().join("carrera.yaml");
        std::fs::write(
            &yaml,
            format!("host: 127.0.0.1\nport: {port}\nzookeeperAddr: {zk}\n"),
        )
        .expect("yaml");
        std::process::Command::new(env!("CARGO_BIN_EXE_pproxy"))
            .args(["check-config", "-c"])
            .arg(&yaml)
            .output()
            .expect("run check-config")
    };
    let out = check(&zk_addr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("topic {topic} -> K")), "{stdout}");
    assert!(stdout.contains("cluster K: kafka"), "{stdout}");
    let out = check(&format!("127.0.0.1:{}", free_port()));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
