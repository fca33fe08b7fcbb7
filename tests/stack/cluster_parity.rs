//! Cluster mode at parity with a single node (issue #20 part 2, docs/CLUSTER.md) against the real
//! Kafka of `scripts/stack.sh`: pproxy processes on one machine share a journal topic.
//! 1. Dead letters of partitions owned by different nodes are listed by every node, and each is
//!    re-driven or purged through a node that does not own it (forwarded to the owner).
//! 2. `scheduler.maxPending` is enforced cluster-wide: adds beyond it are refused with the
//!    single-node code (15) once the pending totals are refreshed, and accepted again after
//!    the pending messages fired.
//! 3. With `server.adminTls` (TLS from non-loopback peers), forwarded status queries, dead-letter
//!    lists and re-drives reach the owner over TLS with a client certificate.
//!
//! Dead letters are made as the console test makes them: the writers' `message.max.bytes` is
//! 1000 (`kafkaOverrides` "*", which the journal does not use), so a 2000-byte body fails
//! permanently when it fires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::cluster::{now_ms, Journal};
use crate::common::*;
use bytes::Bytes;
use pproxy::client::Client;
use pproxy::http::client;
use pproxy::http::Method;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, DelayMessage, Protocol};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const PARTITIONS: i32 = 6;
const SMALL_MAX: &str =
    "kafkaOverrides:\n  \"*\": {message.max.bytes: \"1000\", batch.size: \"1000\"}\n";

/// Names of one run: the delay topic and the journal's names.
struct Names {
    topic: String,
    journal: Journal,
}

fn names() -> Names {
    Names {
        topic: unique_topic("parity"),
        journal: Journal::fresh(),
    }
}

/// The `scheduler:` block of a cluster node (`extra` goes under `scheduler:`).
fn cluster_yaml(n: &Names, extra_scheduler: &str, extra_cluster: &str) -> String {
    format!(
        "localConfig: local.json\n\
         scheduler:\n{extra_scheduler}  cluster:\n    enabled: true\n    journalCluster: K_test\n    \
         journalTopic: \"{}\"\n    journalPartitions: {PARTITIONS}\n    sessionTimeoutMs: 6000\n    \
         heartbeatMs: 200\n    group: \"{}\"\n{extra_cluster}",
        n.journal.topic, n.journal.group
    )
}

fn local_doc_for(kafka: &str, n: &Names) -> String {
    local_config(
        kafka,
        &[(&n.topic, r#","delayTopic":true"#)],
        &n.journal.delay_section(),
    )
}

fn http_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let (status, body) = admin_get(port, path)?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// Waits until every journal partition is active on some node and every node owns one.
fn wait_settled(admin: &[u16], logs: impl Fn() -> String) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut active = BTreeSet::new();
        let mut owning = 0;
        for p in admin {
            let Some((200, v)) = http_json(*p, "/delay/cluster") else {
                continue;
            };
            let mine: Vec<i64> = v["partitions"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|x| x["state"] == "active")
                        .filter_map(|x| x["partition"].as_i64())
                        .collect()
                })
                .unwrap_or_default();
            owning += usize::from(!mine.is_empty());
            active.extend(mine);
        }
        if active.len() == PARTITIONS as usize && owning == admin.len() {
            // Let the last rebalance settle: the group description must show it.
            std::thread::sleep(Duration::from_secs(2));
            return;
        }
        assert!(
            Instant::now() < until,
            "journal partitions not all active on {} nodes after 60 s; logs:\n{}",
            admin.len(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One delay add (one-shot due at `due_ms`) through `addr`: (code, id).
async fn add(addr: &str, topic: &str, body: &[u8], due_ms: i64) -> (i32, String) {
    let mut c = Client::connect(addr, Protocol::Compact, Duration::from_secs(5))
        .await
        .expect("connect");
    let m = DelayMessage {
        topic: Some(topic.into()),
        body: Some(Bytes::from(body.to_vec())),
        action: 1,
        timestamp: due_ms,
        dmsgtype: 2,
        uuid: Some(uuid::Uuid::new_v4().to_string()),
        ..Default::default()
    };
    match c.call(&Call::SendDelaySync(Some(m), 5000)).await {
        Ok(Reply::Result { code, delay_id, .. }) => (code, delay_id.unwrap_or_default()),
        other => panic!("add through {addr}: {other:?}"),
    }
}

/// `GET /delay/dead` of one node: id -> (servedBy, journalPartition), and the incomplete header.
fn dead_of(port: u16) -> (BTreeMap<String, (String, i64)>, Option<String>) {
    let Some((status, headers, body)) = admin_get_full(port, "/delay/dead?limit=1000") else {
        return (BTreeMap::new(), Some("no answer".into()));
    };
    assert_eq!(status, 200, "GET /delay/dead on {port}: {body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a JSON list");
    let map = list
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap_or("").to_string(),
                (
                    d["servedBy"].as_str().unwrap_or("?").to_string(),
                    d["journalPartition"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect();
    let incomplete = headers
        .get("x-pproxy-incomplete")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (map, incomplete)
}

/// `POST path` on a node's admin port over loopback: (status, JSON body).
async fn post(port: u16, path: &str) -> (u16, serde_json::Value) {
    let addr = format!("127.0.0.1:{port}");
    let a = client::request(
        Method::POST,
        &addr,
        path,
        &[],
        None,
        Duration::from_secs(15),
    )
    .await
    .expect("admin answer");
    (
        a.status.as_u16(),
        serde_json::from_str(&a.text()).unwrap_or(serde_json::Value::Null),
    )
}

/// This node's name (`/delay/cluster` "node").
fn node_name(port: u16) -> String {
    let (_, v) = http_json(port, "/delay/cluster").expect("cluster view");
    v["node"].as_str().expect("node").to_string()
}

/// Adds `n` dead-to-be messages through the nodes in turn and waits until every node lists all
/// of them (`every_node`), or until each is listed by some node; answers the ids, each with its
/// owner (`servedBy`, or the node that listed it when the entry does not say).
async fn make_dead_letters(
    proxies: &[Proxy],
    topic: &str,
    n: usize,
    every_node: bool,
    logs: &dyn Fn() -> String,
) -> BTreeMap<String, (String, i64)> {
    let body = vec![b'B'; 2000];
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let (code, id) = add(
            &proxies[i % proxies.len()].addr,
            topic,
            &body,
            now_ms() + 1500,
        )
        .await;
        assert_eq!(code, 0, "add {i}");
        ids.insert(id);
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<_> = proxies.iter().map(|p| dead_of(p.admin_port)).collect();
        let all = seen
            .iter()
            .all(|(m, inc)| inc.is_none() && ids.iter().all(|id| m.contains_key(id)));
        if every_node && all {
            return seen.into_iter().next().map(|(m, _)| m).unwrap_or_default();
        }
        let mut union = BTreeMap::new();
        for (p, (m, _)) in proxies.iter().zip(&seen) {
            for (id, (by, part)) in m {
                let by = if by == "?" {
                    node_name(p.admin_port)
                } else {
                    by.clone()
                };
                union.insert(id.clone(), (by, *part));
            }
        }
        if !every_node && ids.iter().all(|id| union.contains_key(id)) {
            return union;
        }
        if Instant::now() > until {
            let shown: Vec<_> = seen
                .iter()
                .map(|(m, inc)| {
                    let listed = ids.iter().filter(|id| m.contains_key(*id)).count();
                    format!("{listed} of {} listed, incomplete: {inc:?}", ids.len())
                })
                .collect();
            panic!(
                "not every node lists every dead letter after 60 s: {shown:?}; logs:\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn all_logs(proxies: &[Proxy]) -> String {
    proxies
        .iter()
        .map(Proxy::log)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_listed_redriven_and_purged_through_any_node() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let n = names();
    create_topic(&kafka, &n.topic, 2).await;
    let doc = local_doc_for(&kafka, &n);
    let yaml = format!("{SMALL_MAX}{}", cluster_yaml(&n, "", ""));
    let proxies: Vec<Proxy> = (0..3)
        .map(|_| Proxy::start_with_files(&yaml, &[("local.json", doc.clone())]))
        .collect();
    let admin: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    let logs = || all_logs(&proxies);
    wait_settled(&admin, logs);
    let nodes: Vec<String> = admin.iter().map(|p| node_name(*p)).collect();

    let dead = make_dead_letters(&proxies, &n.topic, 12, true, &logs).await;
    let owners: BTreeSet<&String> = dead.values().map(|(by, _)| by).collect();
    println!("cluster_parity: 12 dead letters on partitions owned by {owners:?}");
    assert!(owners.len() >= 2, "dead letters all on one owner: {dead:?}");

    // Writes succeed again (reload without the small limit): a re-drive delivers.
    for p in &proxies {
        let conf = p.dir.path().join("carrera.yaml");
        let text = std::fs::read_to_string(&conf).expect("conf");
        std::fs::write(&conf, text.replace(SMALL_MAX, "")).expect("conf");
        p.hup();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut redriven = Vec::new();
    for (i, (id, (owner, partition))) in dead.iter().enumerate() {
        let via = nodes.iter().position(|x| x != owner).expect("a non-owner");
        let action = if i % 2 == 0 { "redrive" } else { "purge" };
        let (status, v) = post(admin[via], &format!("/delay/dead/{id}/0/{action}")).await;
        assert_eq!(
            status, 200,
            "{action} of {id} (partition {partition}, owner {owner}) through {}: {v}",
            nodes[via]
        );
        assert_eq!(v["servedBy"].as_str(), Some(owner.as_str()), "{v}");
        if action == "redrive" {
            assert_eq!(v["code"], 0, "re-drive of {id} through {}: {v}", nodes[via]);
            redriven.push(id.clone());
        } else {
            assert_eq!(v["purged"], true, "{v}");
        }
    }
    // Afterwards no node lists any of them, and every re-driven one reached the topic.
    for p in &admin {
        let (left, incomplete) = dead_of(*p);
        assert!(incomplete.is_none(), "{incomplete:?}");
        let still: Vec<_> = dead.keys().filter(|id| left.contains_key(*id)).collect();
        assert!(still.is_empty(), "still dead on admin port {p}: {still:?}");
    }
    let got = consume(&kafka, &n.topic, redriven.len(), Duration::from_secs(30));
    assert_eq!(
        got.len(),
        redriven.len(),
        "re-driven messages in {}",
        n.topic
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_is_enforced_across_the_cluster() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    const LIMIT: usize = 4;
    let n = names();
    create_topic(&kafka, &n.topic, 2).await;
    let doc = local_doc_for(&kafka, &n);
    let yaml = cluster_yaml(&n, &format!("  maxPending: {LIMIT}\n"), "");
    let proxies: Vec<Proxy> = (0..2)
        .map(|_| Proxy::start_with_files(&yaml, &[("local.json", doc.clone())]))
        .collect();
    let admin: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    let logs = || all_logs(&proxies);
    wait_settled(&admin, logs);
    let pending = || -> i64 {
        admin
            .iter()
            .filter_map(|p| http_json(*p, "/delay/cluster"))
            .flat_map(|(_, v)| v["partitions"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["pending"].as_i64())
            .sum()
    };

    // LIMIT adds spread over both nodes, due in 8 s.
    let due = now_ms() + 8000;
    for i in 0..LIMIT {
        let (code, _) = add(&proxies[i % 2].addr, &n.topic, b"p", due).await;
        assert_eq!(code, 0, "add {i} under the limit");
    }
    let until = Instant::now() + Duration::from_secs(5);
    while pending() < LIMIT as i64 {
        assert!(
            Instant::now() < until,
            "owners never counted {LIMIT} pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // After a refresh (every second) every node refuses with the single-node code.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for p in &proxies {
        let (code, id) = add(&p.addr, &n.topic, b"over", now_ms() + 60_000).await;
        assert_eq!(
            code,
            15,
            "add beyond maxPending {LIMIT} through {} answered {code} ({id}); cluster pending {}",
            p.addr,
            pending()
        );
    }
    // Once they fired (and the totals are refreshed) adds are accepted again.
    let until = Instant::now() + Duration::from_secs(40);
    while pending() > 0 {
        assert!(Instant::now() < until, "pending messages never fired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for p in &proxies {
        let (code, _) = add(&p.addr, &n.topic, b"again", now_ms() + 3000).await;
        assert_eq!(code, 0, "add after the fires through {}", p.addr);
    }
    assert_eq!(
        consume(&kafka, &n.topic, LIMIT + 2, Duration::from_secs(30)).len(),
        LIMIT + 2
    );
}

/// This host's first non-loopback IPv4 address, if it has one (no packet is sent).
fn host_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A CA and one node certificate valid for loopback and `ip`: (ca, cert, key), PEM.
fn pki(ip: IpAddr) -> (String, String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "parity ca");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key")).expect("ca");
    let sans = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        ip.to_string(),
    ];
    let mut leaf = CertificateParams::new(sans).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "pproxy node");
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca).expect("leaf");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_calls_use_tls_when_the_admin_port_does() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let Some(ip) = host_ip() else {
        skip("no non-loopback address: the admin port serves loopback peers plaintext");
        return;
    };
    let n = names();
    create_topic(&kafka, &n.topic, 2).await;
    let doc = local_doc_for(&kafka, &n);
    let (ca, cert, key) = pki(ip);
    let files = [
        ("local.json", doc),
        ("ca.pem", ca),
        ("server.pem", cert),
        ("server.key", key),
    ];
    // Peers reach each other on the host address, where plaintext is refused (403).
    let proxies: Vec<Proxy> = (0..2)
        .map(|_| {
            let admin_port = free_port();
            let yaml =
                format!(
                "server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 0.0.0.0\n  adminTls: true\n  \
                 adminMutationsLoopbackOnly: false\n\
                 tls:\n  certFile: server.pem\n  keyFile: server.key\n  clientCaFile: ca.pem\n  \
                 requireClientCert: true\n{SMALL_MAX}{}",
                cluster_yaml(&n, "", &format!("    advertisedAdmin: \"{ip}:{admin_port}\"\n"))
            );
            let dir = tempfile::tempdir().expect("tempdir");
            Proxy::start_on(free_port(), admin_port, &yaml, &files, dir)
        })
        .collect();
    let admin: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    let logs = || all_logs(&proxies);
    wait_settled(&admin, logs);
    let nodes: Vec<String> = admin.iter().map(|p| node_name(*p)).collect();

    let dead = make_dead_letters(&proxies, &n.topic, 6, false, &logs).await;
    let (id, (owner, _)) = dead.iter().next().expect("a dead letter");
    let via = nodes.iter().position(|x| x != owner).expect("a non-owner");
    let (status, v) = http_json(admin[via], &format!("/delay/{id}")).expect("status answer");
    assert_eq!(
        status, 200,
        "status of {id} through {} (owner {owner}): {v}",
        nodes[via]
    );
    assert_eq!(v["servedBy"].as_str(), Some(owner.as_str()), "{v}");
    let listed = v["deadLetters"].as_array().map_or(0, Vec::len);
    assert!(listed > 0, "the owner's record shows the dead letter: {v}");

    let (status, v) = post(admin[via], &format!("/delay/dead/{id}/0/redrive")).await;
    assert_eq!(
        status, 200,
        "re-drive of {id} through {} (owner {owner}): {v}",
        nodes[via]
    );
    assert_eq!(v["servedBy"].as_str(), Some(owner.as_str()), "{v}");
    assert!(v["code"].is_number(), "{v}");
    // Every node lists every dead letter, through the peers' TLS.
    make_dead_letters(&proxies, &n.topic, 1, true, &logs).await;
}
