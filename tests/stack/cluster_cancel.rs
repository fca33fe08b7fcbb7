//! The cancel race of cluster mode (issue #20 part 2, delay.md §6 guarantee 4) against the real
//! Kafka of `scripts/stack.sh`: two pproxy nodes share one journal; one-shot adds spread over
//! every journal partition fall due a few seconds ahead, and two thirds of them are cancelled
//! through the node that does NOT own the id's partition, each at a random moment 100-800 ms
//! before its due time. The owners apply journaled cancels late on purpose
//! (`PPROXY_TEST_CANCEL_APPLY_DELAY_MS`, a loaded node's apply lag), so a cancel answered as soon
//! as the journal acknowledged it would be answered 0 and fire afterwards.
//!
//! Checked on the delay topic, read from Kafka after every due time plus a margin:
//! 1. no cancel answered 0 fires after its answer (no record of a cancelled id with a
//!    CreateTime later than the moment its cancel was answered); one handed to the writer
//!    before the cancel's answer may fire (guarantee 4 and §5.1: such a cancel is answered 0);
//! 2. every add that was not cancelled fires exactly once.
//!
//! Figures are printed with a `cluster_cancel:` prefix:
//! `cargo test --test stack cluster_cancel -- --nocapture`. Knobs: PPROXY_CLUSTER_SEED (the leads),
//! PPROXY_CLUSTER_CANCEL_LAG_MS (the injected lag, default 300; 0 for none).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cluster::{now_ms, seed, Journal};
use crate::common::*;
use pproxy::client::Client;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Protocol};
use rand::{Rng, SeedableRng};

const JOURNAL_PARTITIONS: i32 = 6;
const NODES: usize = 2;
/// One-shot adds; two thirds of them are cancelled.
const ADDS: usize = 300;
/// Due times: this far ahead of the start of the adds (spread evenly).
const DUE_FROM_MS: i64 = 8000;
const DUE_SPAN_MS: i64 = 3000;
/// A cancel is sent this long before its add's due time (uniformly random).
const LEAD_MS: std::ops::Range<i64> = 100..800;
/// The owners' injected apply lag of cancels: longer than part of the leads, so on a node that
/// answers a cancel before it is applied, those cancels lose against the fire.
/// `PPROXY_CLUSTER_CANCEL_LAG_MS` overrides it (0: no injected lag, a healthy cluster).
const APPLY_LAG_MS: u64 = 300;

fn apply_lag_ms() -> u64 {
    std::env::var("PPROXY_CLUSTER_CANCEL_LAG_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(APPLY_LAG_MS)
}

/// A pproxy cluster node started with the test-only apply lag (the shared `Proxy` passes no
/// environment); killed on drop.
struct Node {
    child: Child,
    addr: String,
    admin: u16,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(yaml: &str, doc: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin) = (free_port(), free_port());
        std::fs::write(dir.path().join("local.json"), doc).expect("write local.json");
        let conf = dir.path().join("carrera.yaml");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {port}\nadminPort: {admin}\nserver:\n  bindAddr: 127.0.0.1\n  \
                 adminBindAddr: 127.0.0.1\ndataDir: data\n{yaml}\n"
            ),
        )
        .expect("write carrera.yaml");
        let log = std::fs::File::create(dir.path().join("pproxy.log")).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pproxy"));
        cmd.arg("run")
            .arg("-c")
            .arg(&conf)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("PPROXY_TEST_CANCEL_APPLY_DELAY_MS")
            .stdout(Stdio::null())
            .stderr(log);
        if apply_lag_ms() > 0 {
            cmd.env(
                "PPROXY_TEST_CANCEL_APPLY_DELAY_MS",
                apply_lag_ms().to_string(),
            );
        }
        let child = cmd.spawn().expect("spawn pproxy");
        let mut n = Node {
            child,
            addr: format!("127.0.0.1:{port}"),
            admin,
            dir,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !matches!(admin_get(admin, "/ready"), Some((200, _))) {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("pproxy exited early ({status}):\n{}", n.log());
            }
            assert!(Instant::now() < until, "pproxy not ready:\n{}", n.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pproxy.log")).unwrap_or_default()
    }

    /// Journal partitions this node reports active.
    fn active(&self) -> BTreeSet<i64> {
        let Some((200, body)) = admin_get(self.admin, "/delay/cluster") else {
            return BTreeSet::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["state"] == "active")
                    .filter_map(|p| p["partition"].as_i64())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which node owns each journal partition, once every partition is active on exactly one.
async fn stable_owners(nodes: &[Node]) -> BTreeMap<i64, usize> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut owners = BTreeMap::new();
        let mut twice = false;
        for (i, n) in nodes.iter().enumerate() {
            for p in n.active() {
                twice |= owners.insert(p, i).is_some();
            }
        }
        if !twice && owners.len() == JOURNAL_PARTITIONS as usize {
            return owners;
        }
        if Instant::now() > until {
            let logs: Vec<String> = nodes.iter().map(Node::log).collect();
            panic!(
                "journal partitions not all active once: {owners:?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One cancel's outcome: code, when it was sent and answered (epoch ms), the node it went to.
#[derive(Debug, Clone, Copy)]
struct Cancelled {
    code: i32,
    sent: i64,
    answered: i64,
    node: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_to_a_non_owner_just_before_due_never_fires_after_its_answer() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let seed: u64 = seed();
    let names = Journal::fresh();
    let topic = unique_topic("cancelrace");
    let (journal, group) = (&names.topic, &names.group);
    println!(
        "cluster_cancel: seed {seed}, delay topic {topic}, journal {journal}, apply lag {} ms",
        apply_lag_ms()
    );
    create_topic(&kafka, &topic, 3).await;
    let doc = local_config(
        &kafka,
        &[(&topic, r#","delayTopic":true"#)],
        &names.delay_section(),
    );
    let yaml = format!(
        "localConfig: local.json\n\
         scheduler:\n  cluster:\n    enabled: true\n    journalCluster: K_test\n    \
         journalTopic: \"{journal}\"\n    journalPartitions: {JOURNAL_PARTITIONS}\n    \
         group: \"{group}\"\n"
    );
    let nodes: Vec<Node> = (0..NODES).map(|_| Node::start(&yaml, &doc)).collect();
    let owners = stable_owners(&nodes).await;
    println!("cluster_cancel: owners {owners:?}");

    // Adds, all through node 0, due evenly over DUE_SPAN_MS; every third one is a control.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Client::connect(&nodes[0].addr, Protocol::Compact, Duration::from_secs(5))
        .await
        .expect("connect");
    let start = now_ms();
    // (uuid, add id, due, cancelled?)
    let mut adds: Vec<(String, String, i64, bool)> = Vec::new();
    for i in 0..ADDS {
        let due = start + DUE_FROM_MS + DUE_SPAN_MS * i as i64 / ADDS as i64;
        let uuid = uuid::Uuid::new_v4().to_string();
        let add = looped_or_once_add(&topic, &uuid, due, false);
        match c.call(&Call::SendDelaySync(Some(add), 3000)).await {
            Ok(Reply::Result {
                code: 0,
                delay_id: Some(id),
                ..
            }) => adds.push((uuid, id, due, i % 3 != 0)),
            other => panic!("add {i} not answered 0: {other:?}"),
        }
    }
    let added_by = now_ms();
    println!(
        "cluster_cancel: {} adds in {} ms",
        adds.len(),
        added_by - start
    );
    assert!(
        added_by < start + DUE_FROM_MS - 1000,
        "adds took too long for their due times"
    );

    // Each cancel from its own task and connection, to the node that does not own the id's
    // partition, LEAD_MS before its due time.
    let results: Arc<Mutex<HashMap<String, Cancelled>>> = Arc::default();
    let mut per_partition = BTreeMap::<i32, usize>::new();
    let mut tasks = Vec::new();
    for (uuid, id, due, cancel) in &adds {
        let p = pproxy::delay::cluster::journal::partition_of(uuid, JOURNAL_PARTITIONS);
        *per_partition.entry(p).or_default() += 1;
        if !cancel {
            continue;
        }
        let node = (owners[&(p as i64)] + 1) % NODES;
        let at = due - rng.random_range(LEAD_MS);
        let (addr, topic, id, uuid) = (
            nodes[node].addr.clone(),
            topic.clone(),
            id.clone(),
            uuid.clone(),
        );
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, Protocol::Compact, Duration::from_secs(5))
                .await
                .expect("connect");
            tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await;
            let sent = now_ms();
            let reply = c.call(&delay_cancel(&topic, &id)).await;
            let answered = now_ms();
            let code = match reply {
                Ok(Reply::Result { code, .. }) => code,
                other => panic!("cancel of {id}: {other:?}"),
            };
            results.lock().unwrap().insert(
                uuid,
                Cancelled {
                    code,
                    sent,
                    answered,
                    node,
                },
            );
        }));
    }
    println!("cluster_cancel: adds per journal partition {per_partition:?}");
    for t in tasks {
        t.await.expect("cancel task");
    }
    let results = results.lock().unwrap().clone();

    // Everything fired, read after the last due time plus a margin: until 3 s pass quietly.
    let last_due = adds.iter().map(|a| a.2).max().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(
        (last_due + 3000 - now_ms()).max(0) as u64
    ))
    .await;
    let (k, t) = (kafka.clone(), topic.clone());
    let consumed = tokio::task::spawn_blocking(move || {
        let consumer = consumer_from_beginning(&k, &t);
        let mut out = Vec::new();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(3) {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                out.push(Consumed::from_message(&m.expect("consume")));
                quiet_since = Instant::now();
            }
        }
        out
    })
    .await
    .expect("consumer");
    let mut fired: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &consumed {
        let body = String::from_utf8_lossy(&r.value).into_owned();
        fired.entry(body).or_default().push(r.timestamp_ms);
    }

    // Counts, then the checks.
    let mut codes = BTreeMap::<i32, usize>::new();
    let (mut after_answer, mut before_answer, mut held) = (Vec::new(), 0usize, 0usize);
    let mut waits: Vec<i64> = Vec::new();
    let (mut missing, mut duplicated) = (Vec::new(), Vec::new());
    for (uuid, id, due, cancel) in &adds {
        let times = fired.get(uuid).cloned().unwrap_or_default();
        if !cancel {
            match times.len() {
                0 => missing.push(id.clone()),
                1 => {}
                _ => duplicated.push(id.clone()),
            }
            continue;
        }
        let r = results[uuid];
        *codes.entry(r.code).or_default() += 1;
        if r.code != 0 {
            continue;
        }
        waits.push(r.answered - r.sent);
        if times.is_empty() {
            held += 1;
        } else if times.iter().any(|t| *t > r.answered) {
            after_answer.push(format!(
                "{id} (due {due}, cancel sent {} to node {}, answered 0 at {}, fired at {times:?})",
                r.sent, r.node, r.answered
            ));
        } else {
            before_answer += 1;
        }
    }
    waits.sort_unstable();
    let pct = |q: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * q) as usize)
            .copied()
    };
    println!(
        "cluster_cancel: cancels by code {codes:?}; answered 0: {} held, {before_answer} fired \
         before their answer, {} fired AFTER their answer; answer time ms p50 {:?} p99 {:?} max \
         {:?}; controls missing {}, duplicated {}",
        held,
        after_answer.len(),
        pct(0.5),
        pct(0.99),
        waits.last(),
        missing.len(),
        duplicated.len()
    );
    let ok = after_answer.is_empty() && missing.is_empty() && duplicated.is_empty();
    if !ok {
        let logs: Vec<String> = nodes.iter().map(Node::log).collect();
        let tail: Vec<&str> = logs.iter().flat_map(|l| l.lines().rev().take(20)).collect();
        println!("cluster_cancel: node log tails:\n{}", tail.join("\n"));
    }
    assert!(
        after_answer.is_empty(),
        "{} cancels answered 0 fired after their answer, e.g. {:?}",
        after_answer.len(),
        &after_answer[..after_answer.len().min(5)]
    );
    assert!(missing.is_empty(), "controls never fired: {missing:?}");
    assert!(
        duplicated.is_empty(),
        "controls fired twice: {duplicated:?}"
    );
    assert!(
        codes.get(&0).copied().unwrap_or(0) * 10 >= results.len() * 9,
        "most cancels must be answered 0 on a healthy cluster: {codes:?}"
    );
}
