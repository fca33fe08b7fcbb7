//! The shipped Grafana dashboard and Prometheus rules (issue 19 items 3 and 4) against a real
//! Prometheus (Debian's `prometheus` and `promtool`) scraping real pproxy processes:
//!
//! 1. `promtool check rules deploy/prometheus/pproxy-rules.yml` passes and every alert carries a
//!    summary, a description and a runbook line;
//! 2. Prometheus scrapes three nodes: a local-mode node forwarding to the real Kafka and RocketMQ
//!    of `scripts/stack.sh` (plus a Kafka cluster nobody listens on), a ZooKeeper-mode node
//!    (through a relay the test can cut) and a cluster-mode delay node; after some traffic every
//!    query of every dashboard panel, every dashboard variable and every recording rule returns
//!    at least one series through the HTTP API;
//! 3. alerts reach the firing state from causes made for real: rate-limit refusals, dead
//!    letters (fires to a topic missing on the broker), broker errors, late fires (a broker that
//!    does not answer), ZooKeeper disconnected (the relay cut; and never on the other modes'
//!    nodes), delay store failed (the data directory's filesystem filled), delay store stuck
//!    (the filesystem frozen); the store alerts resolve once the disk is repaired.
//!
//! The rules are loaded as shipped except that every `for:` is cut to 1 s (the shipped
//! durations are minutes, which a test cannot wait for); Prometheus scrapes and evaluates every
//! second. The store tests mount filesystems and so need root (as tests/faults/disk_trouble.rs).
//! Without `prometheus`/`promtool` the tests print one line and pass, unless
//! PPROXY_REQUIRE_STACK=1. `cargo test --test dashboards -- --nocapture` prints the timings.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::disk::{fill, root_or_skip, start_on_disk, Disk, Frozen};
use crate::common::prometheus::{delay_once, everyday_traffic, Prometheus};
use crate::common::*;
use pproxy::proto::Call;
use zookeeper_client as zk;

const RULES: &str = "deploy/prometheus/pproxy-rules.yml";
const DASHBOARD: &str = "deploy/grafana/pproxy.json";
/// Where DDMQ's console keeps the documents (config.md §3).
const ZK_ROOT: &str = "/carrera/v4/config";

/// Both tools, or one line saying which is missing.
fn tools_or_skip() -> bool {
    let what = "Debian's prometheus package (scripts/setup.sh --tests)";
    tool_available("prometheus", what) && tool_available("promtool", what)
}

/// The rules as shipped, but every `for:` cut to 1 s: the shipped durations (minutes) are for
/// production; here an alert must fire within seconds of its cause.
fn test_rules() -> String {
    let text = std::fs::read_to_string(repo_path(RULES)).expect("read the rules");
    text.lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with("for:") {
                format!("{indent}for: 1s")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `promtool check rules` on the shipped file; then the file's recording rule names, after
/// checking that every alert carries a summary, a description and a runbook line.
fn check_rules() -> Vec<String> {
    let path = repo_path(RULES);
    let out = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules: {said}");
    println!("dashboards: promtool: {}", said.trim().replace('\n', " "));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("rules")).expect("yaml");
    let mut records = Vec::new();
    let mut alerts = 0;
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(r) = rule["record"].as_str() {
                records.push(r.to_string());
            }
            if let Some(a) = rule["alert"].as_str() {
                alerts += 1;
                for key in ["summary", "description", "runbook"] {
                    let v = rule["annotations"][key].as_str().unwrap_or_default();
                    assert!(!v.trim().is_empty(), "{a} has no {key}");
                }
                assert!(rule["labels"]["severity"].is_string(), "{a}: severity");
            }
        }
    }
    assert!(alerts >= 7, "{alerts} alerts");
    records
}

/// A query to ask Prometheus: (what it is for, PromQL).
type Query = (String, String);

/// The dashboard's queries, Grafana variables substituted: (panel title, PromQL) of every panel
/// target, and (variable, PromQL) of every `label_values` variable. Checks on the way what an
/// import needs: the `DS_PROMETHEUS` input used by every panel, unique panel ids, and the
/// job/instance filter on every target.
fn dashboard_queries() -> (Vec<Query>, Vec<Query>) {
    let text = std::fs::read_to_string(repo_path(DASHBOARD)).expect("read the dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert_eq!(
        d["__inputs"][0]["name"], "DS_PROMETHEUS",
        "datasource input"
    );
    assert!(d["schemaVersion"].as_i64() >= Some(36), "schemaVersion");
    // Grafana's own values for what the test cannot ask it: all jobs and instances, and the
    // rate interval of a 1 s scrape.
    let substitute = |q: &str| {
        q.replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*")
    };
    let mut ids = HashSet::new();
    let mut panels = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_i64()),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                expr.contains(r#"instance=~"$instance""#),
                "{title}: {expr} ignores the instance variable"
            );
            panels.push((title.clone(), substitute(expr)));
        }
    }
    let mut vars = Vec::new();
    for v in d["templating"]["list"].as_array().expect("templating") {
        let def = v["definition"].as_str().unwrap_or_default();
        // label_values(<selector>, <label>): the selector must return series with that label.
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        vars.push((
            v["name"].as_str().unwrap_or("?").to_string(),
            format!("count by ({}) ({})", label.trim(), substitute(selector)),
        ));
    }
    (panels, vars)
}

/// Waits (bounded) until every query returns at least one series; panics naming those that
/// never did.
fn wait_all_answer(prom: &Prometheus, what: &str, queries: &[Query], bound: Duration) {
    let until = Instant::now() + bound;
    let mut missing: Vec<&Query> = queries.iter().collect();
    loop {
        missing.retain(|(_, q)| prom.series(q).is_empty());
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: no series within {bound:?} for {} of {}:\n{}\ntargets: {}",
            missing.len(),
            queries.len(),
            missing
                .iter()
                .map(|(t, q)| format!("  {t}: {q}"))
                .collect::<Vec<_>>()
                .join("\n"),
            prom.targets()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (bounded) until the alert `name` with `labels` is firing; returns how long it took.
async fn wait_firing(
    prom: &Prometheus,
    name: &str,
    labels: &[(&str, &str)],
    bound: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let found = prom.alerts_named(name, labels);
        if found.iter().any(|a| a["state"] == "firing") {
            let a = &found[0];
            println!(
                "dashboards: {name} firing after {:?}: {} (value {})",
                start.elapsed(),
                a["annotations"]["summary"],
                a["value"]
            );
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "{name} {labels:?} not firing within {bound:?}; active alerts: {:?}\nrules: {}",
            prom.alerts(),
            prom.rules()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (bounded) until no alert `name` with `labels` is active (it resolved).
async fn wait_resolved(prom: &Prometheus, name: &str, labels: &[(&str, &str)], bound: Duration) {
    let start = Instant::now();
    while !prom.alerts_named(name, labels).is_empty() {
        assert!(
            start.elapsed() < bound,
            "{name} {labels:?} still active after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("dashboards: {name} resolved after {:?}", start.elapsed());
}

/// Waits until Prometheus has scraped every target at least once with success.
fn wait_scraped(prom: &Prometheus, targets: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while prom.series("up == 1").len() < targets {
        assert!(Instant::now() < until, "targets not up: {}", prom.targets());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP relay to ZooKeeper that the test can cut (closing every connection and refusing new
/// ones) and restore: a ZooKeeper outage for one node without stopping the shared server.
struct Relay {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let (cut, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() {
                    continue; // dropped: the peer sees the connection closed
                }
                let (mut rx, upstream) = (rx.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

/// Creates or replaces the ZooKeeper node `path` (parents created) with `data`.
async fn zk_put(addr: &str, path: &str, data: &str) {
    let c = zk::Client::connect(addr)
        .await
        .expect("connect to ZooKeeper");
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut parent = String::new();
    for part in path.trim_start_matches('/').split('/') {
        parent = format!("{parent}/{part}");
        let value = if parent == path { data } else { "" };
        match c.create(&parent, value.as_bytes(), &opts).await {
            Ok(_) => {}
            Err(zk::Error::NodeExists) if parent == path => {
                c.set_data(path, data.as_bytes(), None)
                    .await
                    .expect("set_data");
            }
            Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("create {parent}: {e}"),
        }
    }
}

/// Deletes the ZooKeeper node `path` (the shared server keeps no leftovers of this test).
async fn zk_delete(addr: &str, path: &str) {
    let c = zk::Client::connect(addr)
        .await
        .expect("connect to ZooKeeper");
    let _ = c.delete(path, None).await;
}

/// The local-mode node's topics.
struct Topics {
    kafka: String,
    rmq: String,
    delay: String,
    limited: String,
    /// Not created on Kafka: sends answer 14, fires are dead-lettered.
    missing: String,
    /// Delay topic on Kafka, not created: every fire is dead-lettered (14).
    dead: String,
    /// Delay topic on a Kafka cluster nobody listens on: every fire attempt times out (and is
    /// retried later, measured from its retry time).
    late: String,
}

/// The local-mode node's configuration: clusters K_test (the real Kafka), R_test (the real
/// RocketMQ) and K_down (a port nobody listens on).
fn local_node_doc(kafka: &str, ns: &str, down: &str, t: &Topics) -> String {
    let topic = |name: &str, cluster: &str, tps: u32, delay: bool| {
        serde_json::json!({
            "topic": name,
            "delayTopic": delay,
            "topicUnits": [{"brokerCluster": cluster, "proxies": {}, "maxTps": tps}],
        })
    };
    let topics = [
        topic(&t.kafka, "K_test", 100_000, false),
        topic(&t.rmq, "R_test", 100_000, false),
        topic(&t.delay, "K_test", 100_000, true),
        topic(&t.limited, "K_test", 1, false),
        topic(&t.missing, "K_test", 100_000, false),
        topic(&t.dead, "K_test", 100_000, true),
        topic(&t.late, "K_down", 100_000, true),
    ];
    let names: Vec<&serde_json::Value> = topics.iter().map(|t| &t["topic"]).collect();
    serde_json::json!({
        "instance": "local",
        "proxyCluster": "P_test",
        "brokerClusters": ["K_test", "R_test", "K_down"],
        "topics": names,
        "carreraConfiguration": {
            "useKafka": true, "kafkaProducers": 1, "useRocketmq": true, "rocketmqProducers": 1,
            "useRequestLimiter": true,
            "kafkaConfigurationMap": {
                "K_test": {"bootstrapServers": [kafka], "acks": "all"},
                "K_down": {"bootstrapServers": [down], "acks": "all"},
            },
            "rocketmqConfigurationMap": {"R_test": {"namesrvAddrs": [ns]}},
            "defaultTopicInfoConf": {"topics": topics},
        },
    })
    .to_string()
}

/// A delay add of a one-byte one-shot due at `due` ms.
fn once(topic: &str, due: i64) -> Call {
    delay_once(topic, due, 1)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Traffic on the local-mode node that moves every family the dashboard shows.
async fn local_traffic(p: &Proxy, t: &Topics) {
    everyday_traffic(p, &t.kafka, &t.rmq, &t.delay).await;
    let mut c = p.client().await;
    // A 1-message-per-second topic: a burst is refused (15).
    let mut limited = Vec::new();
    for _ in 0..12 {
        limited.push(
            call(&mut c, &Call::SendSync(Some(msg(&t.limited, b"x")), 3000))
                .await
                .0,
        );
    }
    assert!(limited.contains(&15), "refused by the limiter: {limited:?}");
    // A topic the broker does not have.
    for _ in 0..3 {
        let code = call(&mut c, &Call::SendSync(Some(msg(&t.missing, b"x")), 3000)).await;
        assert_eq!(code.0, 14, "{code:?}");
    }
    // Delay: two adds are dead-lettered (14), and eight due at once on the cluster nobody
    // listens on queue behind one another (one fire in flight, each held until its 1 s
    // deadline): fires late for real.
    let now = now_ms();
    for _ in 0..2 {
        assert_eq!(call(&mut c, &once(&t.dead, now + 200)).await.0, 0);
    }
    for _ in 0..8 {
        assert_eq!(call(&mut c, &once(&t.late, now + 200)).await.0, 0);
    }
}

/// The ZooKeeper-mode node: its documents, then the process, connected through `relay`.
async fn zk_node(zk_addr: &str, relay: &Relay, kafka: &str, topic: &str) -> Proxy {
    let (port, admin) = (free_port(), free_port());
    let node = format!("127.0.0.1:{port}");
    let proxy_doc = serde_json::json!({
        "instance": node, "proxyCluster": "P_test", "brokerClusters": ["K"], "topics": [topic],
        "carreraConfiguration": {"useKafka": true, "maxTps": "100000",
            "kafkaConfigurationMap": {"K": {"acks": "all", "bootstrapServers": [kafka]}}},
    });
    let topic_doc = serde_json::json!({"topicUnits": [{"brokerCluster": "K", "maxTps": 1000,
        "proxies": {"P_test": [node]}, "totalMaxTps": 1000}]});
    zk_put(
        zk_addr,
        &format!("{ZK_ROOT}/pproxy/{node}"),
        &proxy_doc.to_string(),
    )
    .await;
    zk_put(
        zk_addr,
        &format!("{ZK_ROOT}/topic/{topic}"),
        &topic_doc.to_string(),
    )
    .await;
    let yaml = format!(
        "zookeeperAddr: 127.0.0.1:{}\nzk:\n  startupWaitMs: 5000\n  resyncIntervalSec: 2\n",
        relay.port
    );
    let p = Proxy::start_on(port, admin, &yaml, &[], tempfile::tempdir().expect("tmp"));
    assert_eq!(send_code(&p, topic).await, 0, "ZooKeeper-mode node serves");
    p
}

/// A one-node delay cluster (cluster mode, journal on the real Kafka) with every journal
/// partition owned, and one add that fires.
async fn cluster_node(kafka: &str) -> Proxy {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let topic = unique_topic("dashc");
    let prefix = format!("pproxy_inner_{}_", &unique[..8]);
    create_topic(kafka, &topic, 2).await;
    let doc = local_config(
        kafka,
        &[(&topic, r#","delayTopic":true"#)],
        &format!(r#""delay":{{"chronosInnerTopicPrefix":"{prefix}","innerTopicNum":1}},"#),
    );
    let yaml = format!(
        "localConfig: local.json\nscheduler:\n  cluster:\n    enabled: true\n    \
         journalCluster: K_test\n    journalTopic: \"{prefix}journal\"\n    \
         journalPartitions: 2\n    group: \"pproxy-dash-{unique}\"\n"
    );
    let p = Proxy::start_with_files(&yaml, &[("local.json", doc)]);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = p.http_get("/delay/cluster").unwrap_or_default();
        if body.matches(r#""active""#).count() == 2 {
            break;
        }
        assert!(
            Instant::now() < until,
            "journal partitions not active: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = p.client().await;
    assert_eq!(call(&mut c, &once(&topic, now_ms() + 300)).await.0, 0);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_answers_and_alerts_fire_on_real_causes() {
    let _stack = STACK.read().await;
    if !tools_or_skip() {
        return;
    }
    let started = Instant::now();
    let records = check_rules();
    let (panels, vars) = dashboard_queries();
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(ns) = crate::common::rmq::namesrv() else {
        return;
    };
    let Some(zk_addr) = zookeeper() else {
        return;
    };
    let t = Topics {
        kafka: unique_topic("dk"),
        rmq: unique_topic("dr"),
        delay: unique_topic("dd"),
        limited: unique_topic("dl"),
        missing: unique_topic("dm"),
        dead: unique_topic("dx"),
        late: unique_topic("dlate"),
    };
    create_topic(&kafka, &t.kafka, 2).await;
    create_topic(&kafka, &t.delay, 1).await;
    create_topic(&kafka, &t.limited, 1).await;
    crate::common::rmq::create_topic(&t.rmq, 2);
    let down = format!("127.0.0.1:{}", free_port());
    let local = Proxy::start_with_files(
        "localConfig: local.json\nscheduler:\n  fireTimeoutMs: 1000\n  fireRetryInitialMs: 100\n  fireRetryMaxMs: 500\n  fireConcurrency: 1\n",
        &[("local.json", local_node_doc(&kafka, &ns, &down, &t))],
    );
    let relay = Relay::start(zk_addr.clone()).await;
    let zk_topic = unique_topic("dz");
    create_topic(&kafka, &zk_topic, 1).await;
    let zk_proxy = zk_node(&zk_addr, &relay, &kafka, &zk_topic).await;
    let cluster = cluster_node(&kafka).await;
    let nodes = [local.admin_port, zk_proxy.admin_port, cluster.admin_port];
    let prom = Prometheus::start_with_rules(&nodes, Some(&test_rules()));
    // Samples from before the traffic: dead letters must be seen growing.
    wait_scraped(&prom, nodes.len());
    let setup = started.elapsed();

    local_traffic(&local, &t).await;
    let traffic = started.elapsed();
    wait_all_answer(&prom, "dashboard panels", &panels, Duration::from_secs(60));
    wait_all_answer(&prom, "dashboard variables", &vars, Duration::from_secs(10));
    let recorded: Vec<Query> = records
        .iter()
        .map(|r| (format!("recording rule {r}"), r.clone()))
        .collect();
    wait_all_answer(&prom, "recording rules", &recorded, Duration::from_secs(30));
    println!(
        "dashboards: {} panel queries, {} variables, {} recording rules answered {:?} after the traffic \
         (setup {setup:?})",
        panels.len(),
        vars.len(),
        records.len(),
        started.elapsed() - traffic
    );

    let local_instance = format!("127.0.0.1:{}", local.admin_port);
    let on_local = [("instance", local_instance.as_str())];
    let limited = [("topic", t.limited.as_str())];
    let bound = Duration::from_secs(90);
    wait_firing(&prom, "PproxyRateLimitRefusals", &limited, bound).await;
    wait_firing(&prom, "PproxyDeadLettersGrowing", &on_local, bound).await;
    wait_firing(&prom, "PproxyBrokerErrors", &on_local, bound).await;
    wait_firing(&prom, "PproxyDelayLatenessHigh", &on_local, bound).await;
    // No ZooKeeper alert while the ZooKeeper-mode node is connected, nor ever for the nodes
    // of the other modes (whose pproxy_zk_connected is 0).
    let zk_alerts = prom.alerts_named("PproxyZooKeeperDisconnected", &[]);
    assert!(zk_alerts.is_empty(), "{zk_alerts:?}");

    let zk_instance = format!("127.0.0.1:{}", zk_proxy.admin_port);
    let on_zk = [("instance", zk_instance.as_str())];
    relay.set_cut(true);
    wait_firing(&prom, "PproxyZooKeeperDisconnected", &on_zk, bound).await;
    let zk_alerts = prom.alerts_named("PproxyZooKeeperDisconnected", &[]);
    assert_eq!(
        zk_alerts.len(),
        1,
        "only the ZooKeeper-mode node: {zk_alerts:?}"
    );
    relay.set_cut(false);
    wait_resolved(&prom, "PproxyZooKeeperDisconnected", &on_zk, bound).await;
    // Nothing says the healthy stores failed.
    for name in ["PproxyDelayStoreFailed", "PproxyDelayStoreStuck"] {
        assert!(prom.alerts_named(name, &[]).is_empty(), "{name}");
    }
    let node = &zk_proxy.addr; // the node name of ZooKeeper mode: host:port
    zk_delete(&zk_addr, &format!("{ZK_ROOT}/pproxy/{node}")).await;
    zk_delete(&zk_addr, &format!("{ZK_ROOT}/topic/{zk_topic}")).await;
    println!("dashboards: panels and alerts in {:?}", started.elapsed());
}

/// Sends a delay add of a `len`-byte body every 100 ms on one connection until stopped
/// (answers not checked: the store's trouble answers them 10); the store has to be written to
/// fail or hang, and to grow its file to meet a full disk.
fn keep_adding(
    p: &Proxy,
    topic: &str,
    len: usize,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, topic, flag) = (p.addr.clone(), topic.to_string(), stop.clone());
    let task = tokio::spawn(async move {
        let mut c = pproxy::client::Client::connect(
            &addr,
            pproxy::proto::Protocol::Compact,
            Duration::from_secs(30),
        )
        .await
        .expect("connect");
        while !flag.load(Ordering::Relaxed) {
            let _ = c.call(&delay_once(&topic, now_ms() + 60_000, len)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fires_delay_store_failed_until_space_returns() {
    let _stack = STACK.read().await;
    if !tools_or_skip() || !root_or_skip("a_full_disk_fires_delay_store_failed") {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let disk = Disk::tmpfs("16m");
    let (p, topic) = start_on_disk(&kafka, &disk, "dfull", "").await;
    let prom = Prometheus::start_with_rules(&[p.admin_port], Some(&test_rules()));
    wait_scraped(&prom, 1);
    let on = format!("127.0.0.1:{}", p.admin_port);
    let on = [("instance", on.as_str())];
    let bound = Duration::from_secs(60);
    let (stop, task) = keep_adding(&p, &topic, 256 << 10);
    let filled = fill(&disk.path("filler"));
    println!("dashboards: data directory filled ({filled} B)");
    wait_firing(&prom, "PproxyDelayStoreFailed", &on, bound).await;
    // Space back, and small adds from now on, which do not fill it again.
    stop.store(true, Ordering::Relaxed);
    task.await.expect("adds");
    std::fs::remove_file(disk.path("filler")).expect("remove filler");
    let (stop, task) = keep_adding(&p, &topic, 1);
    wait_resolved(&prom, "PproxyDelayStoreFailed", &on, bound).await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("adds");
    assert!(prom.alerts_named("PproxyDelayStoreStuck", &[]).is_empty());
    drop(p);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_filesystem_fires_delay_store_stuck_until_thawed() {
    let _stack = STACK.read().await;
    if !tools_or_skip() || !root_or_skip("a_frozen_filesystem_fires_delay_store_stuck") {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let disk = Disk::ext4(48);
    let (p, topic) = start_on_disk(
        &kafka,
        &disk,
        "dstuck",
        "scheduler:\n  storeStuckAfterMs: 1000\n",
    )
    .await;
    let prom = Prometheus::start_with_rules(&[p.admin_port], Some(&test_rules()));
    wait_scraped(&prom, 1);
    let on = format!("127.0.0.1:{}", p.admin_port);
    let on = [("instance", on.as_str())];
    let (stop, task) = keep_adding(&p, &topic, 1);
    let frozen = Frozen::freeze(disk.mnt.to_str().unwrap_or_default());
    wait_firing(&prom, "PproxyDelayStoreStuck", &on, Duration::from_secs(60)).await;
    drop(frozen);
    wait_resolved(&prom, "PproxyDelayStoreStuck", &on, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("adds");
    assert!(prom.alerts_named("PproxyDelayStoreFailed", &[]).is_empty());
    drop(p);
    drop(disk);
}
