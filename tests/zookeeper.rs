//! ZooKeeper mode against the real ZooKeeper and Kafka from scripts/stack.sh: DDMQ documents
//! admit and remove topics while traffic flows, the on-disk cache starts a node while ZooKeeper
//! is down, and changes made during the outage apply on reconnect.

mod common;

use std::time::Duration;

use common::*;
use zookeeper_client as zk;

const ROOT: &str = "/carrera/v4/config";

fn zk_addr() -> String {
    let addr = std::env::var("PPROXY_TEST_ZK").unwrap_or_else(|_| "127.0.0.1:2181".into());
    if std::net::TcpStream::connect_timeout(
        &addr.parse().expect("host:port"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("no ZooKeeper at {addr}: start the test stack with `scripts/stack.sh up zookeeper` (scripts/test.sh does)");
    }
    addr
}

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
    format!(
        r#"{{"topicUnits":[{{"brokerCluster":"K","maxTps":1000,"proxies":{{"P_test":["{node}"]}},"totalMaxTps":1000}}]}}"#
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
    let kafka = kafka_bootstrap();
    let zk_addr = zk_addr();
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
