//! Cluster mode of the delay scheduler (issue #8, delay.md §10) against the real Kafka of
//! `scripts/stack.sh` (PPROXY_TEST_KAFKA): three pproxy processes on loopback share one journal
//! topic, each with its own data directory. Clients spread adds (one-shots and a few loops, due
//! 1-15 s ahead) and cancels over all three nodes for 30 s; under that load one node is killed
//! with SIGKILL, 8 s later a second one, and later both are restarted on their data
//! directories. Clients of a killed node reconnect to a live one; a request without an answer
//! counts as neither acknowledged nor refused. Counted, not timed (delay.md §6 as adapted to
//! cluster mode):
//! 1. every add answered 0 fires at least once (every occurrence of a loop, unless catch-up may
//!    skip it after a late fire of the previous one, delay.md §5.3);
//! 2. nothing fires before its due time (Kafka CreateTime >= due, for every record);
//! 3. every cancel answered 0 at least 2 s before an occurrence's due time holds (in cluster
//!    mode the owner applies a cancel after its journal consumer lag);
//! 4. duplicates happen only for occurrences the killed node had in flight at a kill: the
//!    partition's last claim before the kill is the killed node's, the first copy reached Kafka
//!    at most 1 s before the kill, every later copy after the takeover claim of another node
//!    (claims read back from the journal), and at most `fireConcurrency` (set to 32) per
//!    partition and kill; a graceful move (the restarts) duplicates nothing;
//! 5. `GET /delay/{id}` answers the same record on every node (`journalPartition`,
//!    `servedBy`), and `GET /delay/cluster` shows every journal partition active exactly once.
//!
//! Figures (failover per kill = the worst lateness of fires due in the 10 s after it or up to
//! the next kill, time to
//! every partition active again, duplicates, counts) are printed with a `cluster:` prefix, before
//! the checks, so a failing run shows them too: `cargo test --test stack cluster:: -- --nocapture`. A
//! failing run keeps the node logs in `<tmp>/pproxy-cluster-<unique>/` (the panic names it). Timing targets are not asserted by that test (they live
//! in the benchmarks); the shipped-defaults test below asserts failover and handover bounds,
//! because issue #20 asks for exactly those. Knobs: PPROXY_CLUSTER_SEED, PPROXY_CLUSTER_SESSION_MS (consumer-group
//! session timeout; default max(3000, the broker's group.min.session.timeout.ms)),
//! PPROXY_CLUSTER_RATE (requests per second per client, default 40).
// The in-process server's future is deep.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cluster::{now_ms, seed, Journal};
use crate::common::*;
use pproxy::client::Client;
use pproxy::delay::cluster::journal::{self, Entry};
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Protocol};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// Partitions of the journal topic (pproxy creates it).
const JOURNAL_PARTITIONS: i32 = 6;
const NODES: usize = 3;
const CLIENTS: usize = 6;
/// Load duration and the disruption schedule, from the start of the load.
const LOAD: Duration = Duration::from_secs(30);
const KILL_1_AT: Duration = Duration::from_secs(8);
const KILL_2_AT: Duration = Duration::from_secs(16);
const RESTART_AT: Duration = Duration::from_secs(25);
/// Due times of adds: this far ahead of the request.
const DUE_MIN_MS: i64 = 1000;
const DUE_MAX_MS: i64 = 15_000;
/// Loops of `looped_or_once_add`: 2 occurrences, 3 s apart.
const LOOP_GAP_MS: i64 = 3000;
/// Cancels count only when answered at least this long before an occurrence's due time.
const CANCEL_LEAD_MS: i64 = 2000;
/// Failover is measured on the fires due in this window after a kill.
const FAILOVER_WINDOW_MS: i64 = 10_000;
/// How long before a kill a fire may still lack its acknowledged fired marker, as in
/// tests/faults/delay_crash.rs: the record's CreateTime is taken when the writer produces it,
/// then come the broker's acknowledgement and the fired marker's append (milliseconds; tens
/// under load). A copy older than that at the kill was journaled as fired and must not fire
/// again on the new owner.
const IN_FLIGHT_WINDOW_MS: i64 = 1_000;
/// `scheduler.fireConcurrency` of the nodes: a fire holds its slot until its fired marker is
/// acknowledged, so a partition has at most this many fires in flight at a kill.
const FIRE_CONCURRENCY: usize = 32;

fn http_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let (status, body) = admin_get(port, path)?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// `GET /delay/cluster` of one node: partition -> (epoch, state).
fn cluster_view(port: u16) -> Option<BTreeMap<i64, (i64, String)>> {
    let (status, v) = http_json(port, "/delay/cluster")?;
    if status != 200 {
        return None;
    }
    Some(
        v["partitions"]
            .as_array()?
            .iter()
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap_or(-1),
                    (
                        p["epoch"].as_i64().unwrap_or(-1),
                        p["state"].as_str().unwrap_or("?").to_string(),
                    ),
                )
            })
            .collect(),
    )
}

/// Journal partitions some node reports "active" in one poll round.
fn active_partitions(round: &[Option<BTreeMap<i64, (i64, String)>>]) -> BTreeSet<i64> {
    round
        .iter()
        .flatten()
        .flat_map(|m| {
            m.iter()
                .filter(|(_, (_, s))| s == "active")
                .map(|(p, _)| *p)
        })
        .collect()
}

/// The broker's `group.min.session.timeout.ms` (Kafka's default 6000 when unknown).
async fn broker_min_session_ms(bootstrap: &str) -> i64 {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(5)) else {
        return 6000;
    };
    let Some(broker) = md.brokers().first().map(|b| b.id()) else {
        return 6000;
    };
    let spec = ResourceSpecifier::Broker(broker);
    match admin.describe_configs([&spec], &AdminOptions::new()).await {
        Ok(res) => res
            .into_iter()
            .flatten()
            .find_map(|r| {
                r.get("group.min.session.timeout.ms")
                    .and_then(|e| e.value.as_deref()?.parse().ok())
            })
            .unwrap_or(6000),
        Err(_) => 6000,
    }
}

#[derive(Default)]
struct Ledger {
    /// Acked adds: add id -> occurrences (occurrence id, due ms).
    adds: HashMap<String, Vec<(String, i64)>>,
    /// Add id -> (answer time, node).
    add_acked: HashMap<String, (i64, usize)>,
    /// Add ids a cancel was sent for (answered or not): their occurrences are not required.
    cancel_tried: HashSet<String>,
    /// Add id -> (time the cancel was answered 0, node, id named by the cancel).
    cancel_acked: HashMap<String, (i64, usize, String)>,
    /// Latest due time of any occurrence of any add sent (answered or not).
    latest_due: i64,
    /// (request kind, code) -> answers.
    answers: BTreeMap<(&'static str, i32), u64>,
    /// The first few answers that were not 0.
    odd: Vec<String>,
    /// Requests without an answer (connection lost: the node was killed).
    unanswered: u64,
    /// Answers per node.
    per_node: [u64; NODES],
}

/// One client: paced requests, each to a random node that is not known to be down; adds
/// (15 % loops) and cancels (25 %, of its own adds due more than 2.5 s ahead, named by the add
/// id or, for loops, sometimes by the id of occurrence 1).
async fn client_load(
    addrs: Vec<String>,
    topic: String,
    seed: u64,
    pace: Duration,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conns: Vec<Option<Client>> = (0..addrs.len()).map(|_| None).collect();
    let mut down_until = vec![0i64; addrs.len()];
    // Own acked adds that may still be cancelled: (add id, first due, occurrence ids).
    let mut mine: Vec<(String, i64, Vec<String>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(pace).await;
        let now = now_ms();
        let up: Vec<usize> = (0..addrs.len()).filter(|i| down_until[*i] <= now).collect();
        if up.is_empty() {
            continue;
        }
        let node = up[rng.random_range(0..up.len())];
        if conns[node].is_none() {
            match Client::connect(&addrs[node], Protocol::Compact, Duration::from_secs(5)).await {
                Ok(c) => conns[node] = Some(c),
                Err(_) => {
                    down_until[node] = now + 500;
                    continue;
                }
            }
        }
        let c = conns[node].as_mut().expect("connected");
        mine.retain(|(_, due, _)| *due > now);
        let candidate = mine
            .iter()
            .position(|(_, due, _)| *due > now + CANCEL_LEAD_MS + 500);
        let cancel = match candidate {
            Some(i) if rng.random_bool(0.25) => Some(mine.swap_remove(i)),
            _ => None,
        };
        if let Some((add, _, occs)) = cancel {
            let named = if occs.len() > 1 && rng.random_bool(0.3) {
                occs[1].clone()
            } else {
                add.clone()
            };
            ledger.lock().unwrap().cancel_tried.insert(add.clone());
            let reply = c.call(&delay_cancel(&topic, &named)).await;
            let at = now_ms();
            let mut l = ledger.lock().unwrap();
            match reply {
                Ok(Reply::Result { code, msg, .. }) => {
                    l.per_node[node] += 1;
                    *l.answers.entry(("cancel", code)).or_default() += 1;
                    if code == 0 {
                        l.cancel_acked.insert(add, (at, node, named));
                    } else if l.odd.len() < 10 {
                        l.odd
                            .push(format!("cancel of {named} on node {node}: {code} {msg}"));
                    }
                }
                Ok(other) => {
                    if l.odd.len() < 10 {
                        l.odd.push(format!("cancel on node {node}: {other:?}"));
                    }
                }
                Err(_) => {
                    l.unanswered += 1;
                    drop(l);
                    conns[node] = None;
                    down_until[node] = now_ms() + 500;
                }
            }
            continue;
        }
        let looped = rng.random_bool(0.15);
        let due = now + rng.random_range(DUE_MIN_MS..DUE_MAX_MS);
        let uuid = uuid::Uuid::new_v4().to_string();
        {
            let mut l = ledger.lock().unwrap();
            let last = due + if looped { LOOP_GAP_MS } else { 0 };
            l.latest_due = l.latest_due.max(last);
        }
        let reply = c
            .call(&Call::SendDelaySync(
                Some(looped_or_once_add(&topic, &uuid, due, looped)),
                3000,
            ))
            .await;
        let at = now_ms();
        let mut l = ledger.lock().unwrap();
        match reply {
            Ok(Reply::Result {
                code: 0,
                delay_id: Some(id),
                ..
            }) => {
                l.per_node[node] += 1;
                *l.answers.entry(("add", 0)).or_default() += 1;
                let occs = occurrence_ids(&id, due, looped, LOOP_GAP_MS);
                l.add_acked.insert(id.clone(), (at, node));
                l.adds.insert(id.clone(), occs.clone());
                drop(l);
                mine.push((id, due, occs.into_iter().map(|(o, _)| o).collect()));
            }
            Ok(Reply::Result { code, msg, .. }) => {
                l.per_node[node] += 1;
                *l.answers.entry(("add", code)).or_default() += 1;
                if l.odd.len() < 10 {
                    l.odd.push(format!("add on node {node}: {code} {msg}"));
                }
            }
            Ok(other) => {
                if l.odd.len() < 10 {
                    l.odd.push(format!("add on node {node}: {other:?}"));
                }
            }
            Err(_) => {
                l.unanswered += 1;
                drop(l);
                conns[node] = None;
                down_until[node] = now_ms() + 500;
            }
        }
    }
}

/// Reads every partition of `topic` from the beginning until `stop` is set.
fn consume_until(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Consumed>>>,
) {
    let consumer = consumer_from_beginning(&bootstrap, &topic);
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.lock().unwrap().push(Consumed::from_message(&m)),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kill,
    Restart,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    kind: Kind,
    node: usize,
    /// When the kill was sent / the restart began (epoch ms).
    at: i64,
    /// When the restarted node answered /ready (restarts only).
    ready: i64,
}

/// One claim of a journal partition: (partition, Kafka CreateTime ms, the claimer's admin
/// address).
type Claim = (i32, i64, String);

/// Every claim in `journal` (the compacted topic keeps them: `min.compaction.lag.ms` is 1 h), in
/// offset order per partition. A claim's CreateTime is when its node took the partition over:
/// it fires nothing of the partition before the claim is acknowledged.
fn journal_claims(bootstrap: &str, journal: &str) -> Vec<Claim> {
    let consumer = consumer_from_beginning(bootstrap, journal);
    let mut ends: HashMap<i32, i64> = (0..JOURNAL_PARTITIONS)
        .filter_map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(journal, p, Duration::from_secs(10))
                .ok()?;
            (high > 0).then_some((p, high))
        })
        .collect();
    let mut claims = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && Instant::now() < until {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let c = Consumed::from_message(&m);
        if c.key.as_deref() == Some(&b"#claim"[..]) {
            if let Ok(Entry::Claim { admin, .. }) = Entry::decode(&c.value) {
                claims.push((c.partition, c.timestamp_ms, admin));
            }
        }
        if ends.get(&c.partition).is_some_and(|h| c.offset + 1 >= *h) {
            ends.remove(&c.partition);
        }
    }
    assert!(
        ends.is_empty(),
        "journal {journal} not read to its end: {ends:?}"
    );
    claims
}

/// Why occurrence `key`, fired at `times` (CreateTimes, sorted), fired more than once: the
/// kill (index into `kills`) and journal partition that explain it, or what does not fit. It
/// fits when the node killed owned the partition at the kill (the partition's last claim
/// before the kill is that node's), its first copy reached Kafka at most
/// `IN_FLIGHT_WINDOW_MS` before the kill, and every later copy came after the next claim of
/// the partition, by another node (the new owner, after the takeover).
fn explain_duplicate(
    key: &str,
    times: &[i64],
    kills: &[Event],
    claims: &[Claim],
    admin: &[u16],
) -> Result<(usize, i32), String> {
    let id = scheduler::DelayId::parse(key).ok_or_else(|| format!("{key}: not an id"))?;
    let p = journal::partition_of(&id.uuid, JOURNAL_PARTITIONS);
    let first = times[0];
    let Some(i) = kills.iter().position(|k| k.at >= first) else {
        return Err(format!(
            "{key} (partition {p}) fired {times:?}, first after the last kill"
        ));
    };
    let kill = kills[i];
    let killed = format!("127.0.0.1:{}", admin[kill.node]);
    let before = claims.iter().rfind(|c| c.0 == p && c.1 <= kill.at);
    let after = claims.iter().find(|c| c.0 == p && c.1 > kill.at);
    let why = if kill.at - first > IN_FLIGHT_WINDOW_MS {
        format!(
            "first copy {} ms before kill {i} (in-flight window {IN_FLIGHT_WINDOW_MS} ms)",
            kill.at - first
        )
    } else if before.is_none_or(|c| c.2 != killed) {
        format!("partition {p} was not the killed node's ({killed}): last claim {before:?}")
    } else if after.is_none_or(|c| c.2 == killed) {
        format!("partition {p}: no takeover claim by another node after the kill: {after:?}")
    } else if let Some(c) = after.filter(|c| times[1..].iter().any(|t| *t < c.1)) {
        format!("a later copy before the takeover claim {c:?}")
    } else {
        return Ok((i, p));
    };
    Err(format!(
        "{key} (partition {p}) fired {times:?}: {why}; kill {i} at {}",
        kill.at
    ))
}

/// Copies the node logs to `<tmp>/pproxy-cluster-<unique>/` for a failure report; its path.
fn keep_logs(journal: &str, logs: &[String]) -> String {
    let dir = std::env::temp_dir().join(format!("pproxy-cluster-{journal}"));
    let _ = std::fs::create_dir_all(&dir);
    for (i, log) in logs.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("node{i}.log")), log);
    }
    dir.display().to_string()
}

/// One poll round of `GET /delay/cluster` on every node (None: no answer).
struct Round {
    at: i64,
    views: Vec<Option<BTreeMap<i64, (i64, String)>>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_kill9_failover_loses_nothing() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let seed: u64 = seed();
    let rate: u64 = std::env::var("PPROXY_CLUSTER_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .max(1);
    let min_session = broker_min_session_ms(&kafka).await;
    let session_ms: i64 = std::env::var("PPROXY_CLUSTER_SESSION_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| min_session.max(3000));
    let heartbeat_ms = (session_ms / 4).clamp(100, 1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let first = rng.random_range(0..NODES);
    let second = (first + 1 + rng.random_range(0..NODES - 1)) % NODES;
    println!(
        "cluster: seed {seed}, {NODES} nodes, {JOURNAL_PARTITIONS} journal partitions, session \
         timeout {session_ms} ms (broker minimum {min_session}), heartbeat {heartbeat_ms} ms, \
         {CLIENTS} clients x {rate} req/s; kill node {first} at +{KILL_1_AT:?}, node {second} at \
         +{KILL_2_AT:?}, restart both at +{RESTART_AT:?}"
    );

    // Fresh names per run: delay topic, inner-topic prefix, journal topic, scheduler group.
    let names = Journal::fresh();
    let topic = unique_topic("cluster");
    let (journal, group) = (&names.topic, &names.group);
    println!("cluster: delay topic {topic}, journal {journal}, group {group}");
    create_topic(&kafka, &topic, 6).await;
    let doc = local_config(
        &kafka,
        &[(&topic, r#","delayTopic":true"#)],
        &names.delay_section(),
    );
    let yaml = format!(
        "localConfig: local.json\n\
         scheduler:\n  fireConcurrency: {FIRE_CONCURRENCY}\n  cluster:\n    enabled: true\n    \
         journalCluster: K_test\n    journalTopic: \"{journal}\"\n    \
         journalPartitions: {JOURNAL_PARTITIONS}\n    sessionTimeoutMs: {session_ms}\n    heartbeatMs: {heartbeat_ms}\n    group: \"{group}\"\n"
    );
    let mut proxies: Vec<Proxy> = (0..NODES)
        .map(|_| Proxy::start_with_files(&yaml, &[("local.json", doc.clone())]))
        .collect();
    let addrs: Vec<String> = proxies.iter().map(|p| p.addr.clone()).collect();
    let admin: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    for (i, p) in proxies.iter().enumerate() {
        println!(
            "cluster: node {i}: Thrift {}, admin port {}",
            p.addr, p.admin_port
        );
    }

    // Steady state first: every journal partition active on some node.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let round: Vec<_> = admin.iter().map(|p| cluster_view(*p)).collect();
        if active_partitions(&round).len() == JOURNAL_PARTITIONS as usize {
            break;
        }
        if Instant::now() > until {
            let logs: Vec<String> = proxies.iter().map(Proxy::log).collect();
            panic!(
                "journal partitions not all active after 60 s: {round:?}\nlogs:\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything fired, read from the start of the run.
    let consumed = Arc::new(Mutex::new(Vec::new()));
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (k, t, s, o) = (
            kafka.clone(),
            topic.clone(),
            consumer_stop.clone(),
            consumed.clone(),
        );
        std::thread::spawn(move || consume_until(k, t, s, o))
    };
    // Ownership as the nodes report it, every 250 ms.
    let rounds = Arc::new(Mutex::new(Vec::<Round>::new()));
    let poller_stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (ports, s, r) = (admin.clone(), poller_stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let at = now_ms();
                let views = ports.iter().map(|p| cluster_view(*p)).collect();
                r.lock().unwrap().push(Round { at, views });
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let load_start = now_ms();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load_stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client_load(
                addrs.clone(),
                topic.clone(),
                rng.random(),
                Duration::from_millis(1000 / rate),
                load_stop.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    // The disruptions, on a thread of their own (restarts block until /ready).
    let controller = std::thread::spawn(move || {
        let start = Instant::now();
        let mut events = Vec::new();
        let sleep_to = |d: Duration| std::thread::sleep(d.saturating_sub(start.elapsed()));
        sleep_to(KILL_1_AT);
        proxies[first].kill9();
        events.push(Event {
            kind: Kind::Kill,
            node: first,
            at: now_ms(),
            ready: 0,
        });
        sleep_to(KILL_2_AT);
        proxies[second].kill9();
        events.push(Event {
            kind: Kind::Kill,
            node: second,
            at: now_ms(),
            ready: 0,
        });
        sleep_to(RESTART_AT);
        for node in [first, second] {
            let at = now_ms();
            proxies[node].restart();
            events.push(Event {
                kind: Kind::Restart,
                node,
                at,
                ready: now_ms(),
            });
        }
        (proxies, events)
    });
    tokio::time::sleep(LOAD).await;
    load_stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    let load_end = now_ms();
    let (proxies, events) = tokio::task::spawn_blocking(move || controller.join())
        .await
        .expect("join")
        .expect("a node did not restart (see the panic above)");

    let l = std::mem::take(&mut *ledger.lock().unwrap());
    let acked_adds = l.adds.len();
    assert!(
        acked_adds > 100,
        "the load did run: {acked_adds} adds answered 0"
    );
    let answered: u64 = l.answers.values().sum();
    let refused: u64 = l
        .answers
        .iter()
        .filter(|((_, code), _)| *code != 0)
        .map(|(_, n)| n)
        .sum();
    assert!(
        refused * 50 <= answered,
        "{refused} of {answered} requests answered non-zero: {:?}; first: {:?}",
        l.answers,
        l.odd
    );
    // Occurrences that must not fire: due at least CANCEL_LEAD_MS after their cancel's answer.
    let mut cancelled: HashMap<String, String> = HashMap::new();
    for (add, (at, _, _)) in &l.cancel_acked {
        for (o, due) in l.adds.get(add).into_iter().flatten() {
            if *due >= at + CANCEL_LEAD_MS {
                cancelled.insert(o.clone(), add.clone());
            }
        }
    }
    let required_first: Vec<&String> = l
        .adds
        .iter()
        .filter(|(add, _)| !l.cancel_tried.contains(*add))
        .map(|(_, occ)| &occ[0].0)
        .collect();

    // Wait until everything due has had its chance: the first occurrence of every add that no
    // cancel was sent for fired, and the last due time (of anything sent) is 3 s past.
    let deadline = l.latest_due + 45_000;
    loop {
        let now = now_ms();
        let seen: HashSet<Vec<u8>> = consumed
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.key.clone())
            .collect();
        let all = required_first.iter().all(|o| seen.contains(o.as_bytes()));
        if (all && now > l.latest_due + 3000) || now > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Late duplicates and wrongly fired cancels still get a moment to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    consumer_stop.store(true, Ordering::Relaxed);
    consumer.join().expect("consumer thread");
    let got = std::mem::take(&mut *consumed.lock().unwrap());

    // Every record: an occurrence id as key, the add's uuid as body, the chronos marker,
    // never before its due time.
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut early = Vec::new();
    let mut malformed = Vec::new();
    let mut cancel_broken = Vec::new();
    for r in &got {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or(b"")).into_owned();
        let Some(id) = scheduler::DelayId::parse(&key) else {
            malformed.push(format!("key {key:?} is not an occurrence id"));
            continue;
        };
        let due = scheduler::to_ms(id.timestamp);
        if r.value != id.uuid.as_bytes() {
            malformed.push(format!(
                "{key}: body {:?}",
                String::from_utf8_lossy(&r.value)
            ));
        }
        if header(r, "from_chronos") != Some(&b"from_chronos"[..]) {
            malformed.push(format!("{key}: no from_chronos header: {:?}", r.headers));
        }
        if r.timestamp_ms < due {
            early.push(format!("{key} {} ms early", due - r.timestamp_ms));
        }
        if cancelled.contains_key(&key) {
            cancel_broken.push(key.clone());
        }
        seen.entry(key).or_default().push(r.timestamp_ms);
    }
    for t in seen.values_mut() {
        t.sort_unstable();
    }

    // Every acked add without a cancel fires occurrence 0; occurrence k of a loop must fire
    // when occurrence k-1 last fired no later than occurrence k's due time (else catch-up may
    // skip it, delay.md §5.3: a re-fire of k-1 after a failover completes it late).
    let OccurrenceCheck {
        must_fire,
        may_skip,
        skipped,
        missing,
    } = check_occurrences(&l.adds, &l.cancel_tried, &seen);

    // Duplicates: only occurrences the killed node had in flight at the kill (docs/CLUSTER.md
    // "Failover and duplicates"). Each is explained by one kill or the check fails.
    let claims = journal_claims(&kafka, journal);
    let kills: Vec<Event> = events
        .iter()
        .filter(|e| e.kind == Kind::Kill)
        .copied()
        .collect();
    let duplicates: usize = seen.values().map(|t| t.len() - 1).sum();
    let duplicated_keys = seen.values().filter(|t| t.len() > 1).count();
    // (kill index, journal partition) -> duplicate copies.
    let mut per_kill_partition: BTreeMap<(usize, i32), usize> = BTreeMap::new();
    let mut unexplained: Vec<String> = Vec::new();
    for (key, times) in seen.iter().filter(|(_, t)| t.len() > 1) {
        match explain_duplicate(key, times, &kills, &claims, &admin) {
            Ok(at) => *per_kill_partition.entry(at).or_default() += times.len() - 1,
            Err(why) => unexplained.push(why),
        }
    }
    let over_bound: Vec<(&(usize, i32), &usize)> = per_kill_partition
        .iter()
        .filter(|(_, n)| **n > FIRE_CONCURRENCY)
        .collect();

    // After the restarts every journal partition is active on exactly one node.
    let until = Instant::now() + Duration::from_secs(30);
    let (final_round, converged) = loop {
        let views: Vec<_> = admin.iter().map(|p| cluster_view(*p)).collect();
        let mut owners: BTreeMap<i64, usize> = BTreeMap::new();
        for m in views.iter().flatten() {
            for (p, (_, s)) in m {
                if s == "active" {
                    *owners.entry(*p).or_default() += 1;
                }
            }
        }
        if owners.len() == JOURNAL_PARTITIONS as usize && owners.values().all(|n| *n == 1) {
            break (views, true);
        }
        if Instant::now() > until {
            break (views, false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    poller_stop.store(true, Ordering::Relaxed);
    poller.join().expect("poller thread");
    let rounds = std::mem::take(&mut *rounds.lock().unwrap());

    // Figures, printed before the checks so that a failing run still shows them. Failover of a
    // kill: the worst lateness (CreateTime - due) of the first fire of the occurrences due in the
    // 10 s after it; ownership: from the kill to the first poll round in which the live nodes
    // have every partition active again.
    // (due, first fire, key) of every occurrence that fired.
    let first_fire: Vec<(i64, i64, &String)> = seen
        .iter()
        .filter_map(|(k, t)| {
            let due = scheduler::to_ms(scheduler::DelayId::parse(k)?.timestamp);
            Some((due, t[0], k))
        })
        .collect();
    let lateness = |from: i64, to: i64| {
        let mut v: Vec<(i64, &String)> = first_fire
            .iter()
            .filter(|(due, _, _)| (from..to).contains(due))
            .map(|(due, t, k)| (t - due, *k))
            .collect();
        v.sort_unstable();
        let p50 = v.get(v.len() / 2).map_or(0, |x| x.0);
        let max = v.last().map_or(0, |x| x.0);
        // The latest fires, for a look at the journal partition or the logs.
        let worst: Vec<String> = v
            .iter()
            .rev()
            .take(2)
            .map(|(l, k)| format!("{k} +{l} ms"))
            .collect();
        (v.len(), p50, max, worst)
    };
    let (n, p50, max, _) = lateness(load_start + 2000, events[0].at);
    println!("cluster: before the first kill: {n} fires, lateness p50 {p50} ms, max {max} ms");
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            Kind::Kill => {
                // Up to the next event at most, so a later kill's failover is not counted here.
                let end = events
                    .get(i + 1)
                    .map_or(e.at + FAILOVER_WINDOW_MS, |next| next.at)
                    .min(e.at + FAILOVER_WINDOW_MS);
                let (n, p50, max, worst) = lateness(e.at, end);
                let owned = rounds
                    .iter()
                    .find(|r| {
                        r.at > e.at
                            && active_partitions(&r.views).len() == JOURNAL_PARTITIONS as usize
                    })
                    .map(|r| format!("{} ms", r.at - e.at))
                    .unwrap_or_else(|| "never seen".into());
                println!(
                    "cluster: kill {} (node {}, +{} ms into the load): failover {max} ms (worst \
                     lateness of the {n} fires due in the next {} ms; p50 {p50} ms; latest \
                     {worst:?}); every partition active again after {owned}",
                    i + 1,
                    e.node,
                    e.at - load_start,
                    end - e.at
                );
            }
            Kind::Restart => {
                let (n, p50, max, _) = lateness(e.at, e.ready + FAILOVER_WINDOW_MS);
                println!(
                    "cluster: restart of node {} (+{} ms, ready after {} ms): {n} fires due until \
                     10 s after ready, lateness p50 {p50} ms, max {max} ms",
                    e.node,
                    e.at - load_start,
                    e.ready - e.at
                );
            }
        }
    }
    // Two nodes reporting one partition active in the same poll round (informational: rounds
    // are not atomic, so a revocation in progress can show up).
    let overlaps = rounds
        .iter()
        .filter(|r| {
            let mut c: BTreeMap<i64, usize> = BTreeMap::new();
            for m in r.views.iter().flatten() {
                for (p, (_, s)) in m {
                    if s == "active" {
                        *c.entry(*p).or_default() += 1;
                    }
                }
            }
            c.values().any(|n| *n > 1)
        })
        .count();
    let ownership: Vec<String> = final_round
        .iter()
        .enumerate()
        .map(|(i, m)| format!("node {i}: {m:?}"))
        .collect();
    let acked_cancels = l.cancel_acked.len();
    let acked_occurrences: usize = l.adds.values().map(Vec::len).sum();
    let acked_uuids: HashSet<&str> = l
        .adds
        .keys()
        .map(|a| &a[a.len().saturating_sub(36)..])
        .collect();
    let not_acked = seen
        .keys()
        .filter(|k| !acked_uuids.contains(&k[k.len().saturating_sub(36)..]))
        .count();
    let mut missing_by_k: BTreeMap<i64, usize> = BTreeMap::new();
    for o in &missing {
        let k = scheduler::DelayId::parse(o).map_or(-1, |d| d.timed);
        *missing_by_k.entry(k).or_default() += 1;
    }
    println!(
        "cluster: {} s of load, answers {:?} (per node {:?}), {} requests unanswered (node \
         killed); {acked_adds} adds answered 0 ({acked_occurrences} occurrences), \
         {acked_cancels} cancels answered 0, {} occurrences that must not fire (cancel >= 2 s \
         ahead), {} of them fired",
        (load_end - load_start) / 1000,
        l.answers,
        l.per_node,
        l.unanswered,
        cancelled.len(),
        cancel_broken.len()
    );
    println!(
        "cluster: {must_fire} acked occurrences required, {} missing (by occurrence index \
         {missing_by_k:?}), {} early; {may_skip} loop occurrences due after a late fire of the \
         previous one, {skipped} of them skipped by catch-up; {} records, {not_acked} occurrences \
         of unanswered adds fired",
        missing.len(),
        early.len(),
        got.len()
    );
    println!(
        "cluster: duplicates {duplicates} ({duplicated_keys} keys), per (kill, journal \
         partition) {per_kill_partition:?} (bound {FIRE_CONCURRENCY} per partition: \
         fireConcurrency); {} not explained by a kill: {:?}; {} claims in the journal",
        unexplained.len(),
        &unexplained[..unexplained.len().min(3)],
        claims.len()
    );
    println!(
        "cluster: {} ownership poll rounds, {overlaps} with a partition active on two nodes; \
         final ownership {ownership:?}",
        rounds.len()
    );

    // What is known about the ones that went wrong: answers, the fires of every occurrence of
    // the add, every node's view of the id, and the log lines naming it.
    let logs: Vec<String> = proxies.iter().map(Proxy::log).collect();
    let explain = |o: &String| {
        let uuid = &o[o.len().saturating_sub(36)..];
        let add = l.adds.keys().find(|a| a.ends_with(uuid));
        let answers = add.map(|a| (l.add_acked.get(a), l.cancel_acked.get(a)));
        // Fire times of every occurrence of the add: (due, CreateTimes).
        let fires: Vec<(i64, Option<&Vec<i64>>)> = add
            .and_then(|a| l.adds.get(a))
            .into_iter()
            .flatten()
            .map(|(o, due)| (*due, seen.get(o)))
            .collect();
        let views: Vec<String> = admin
            .iter()
            .map(|p| {
                admin_get(*p, &format!("/delay/{o}"))
                    .map(|(s, b)| format!("{s} {b}"))
                    .unwrap_or_else(|| "no answer".into())
            })
            .collect();
        let lines: Vec<&str> = logs
            .iter()
            .flat_map(|log| log.lines().filter(|line| line.contains(uuid)))
            .take(20)
            .collect();
        format!(
            "{o}: occurrences of its add (due, fired at) {fires:?}; add answered (ms, node) {:?}, \
             cancel answered (ms, node, id) {:?}; GET /delay on each node: {views:?}; log: \
             {lines:?}",
            answers.map(|a| a.0),
            answers.and_then(|a| a.1)
        )
    };
    let missing_ex: Vec<String> = missing.iter().take(3).map(&explain).collect();
    let broken_ex: Vec<String> = cancel_broken.iter().take(3).map(&explain).collect();
    let ok = missing.is_empty()
        && early.is_empty()
        && cancel_broken.is_empty()
        && malformed.is_empty()
        && unexplained.is_empty()
        && over_bound.is_empty()
        && converged;
    let kept = if ok {
        String::new()
    } else {
        keep_logs(journal, &logs)
    };
    assert!(
        missing.is_empty() && early.is_empty() && cancel_broken.is_empty() && malformed.is_empty(),
        "{} acknowledged occurrences (of {must_fire}; by occurrence index {missing_by_k:?}) never \
         fired: {missing_ex:?}; {} fired early: {:?}; {} acknowledged cancels (of {} \
         occurrences) did not hold: {broken_ex:?}; {} malformed records: {:?}; events \
         {events:?}; node logs kept in {kept}",
        missing.len(),
        early.len(),
        &early[..early.len().min(3)],
        cancel_broken.len(),
        cancelled.len(),
        malformed.len(),
        &malformed[..malformed.len().min(3)],
    );
    assert!(
        unexplained.is_empty() && over_bound.is_empty(),
        "{} of {duplicated_keys} duplicated occurrences were not in flight at a kill: {:?}; \
         (kill, partition) over the {FIRE_CONCURRENCY} in flight: {over_bound:?}; events \
         {events:?}; node logs kept in {kept}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(5)],
    );
    assert!(
        converged,
        "partitions not each active on one node 30 s after the restarts: {final_round:?}; node \
         logs kept in {kept}"
    );

    // Status by id from every node (forwarded to the owner): the same record everywhere.
    let samples: Vec<(String, &str)> = {
        let fired_once: Vec<String> = l
            .adds
            .iter()
            .filter(|(a, occ)| occ.len() == 1 && !l.cancel_tried.contains(*a))
            .map(|(a, _)| a.clone())
            .take(3)
            .collect();
        let held: Vec<String> = l
            .cancel_acked
            .iter()
            .filter(|(a, (at, _, _))| {
                l.adds
                    .get(*a)
                    .is_some_and(|occ| occ[0].1 >= at + CANCEL_LEAD_MS)
            })
            .map(|(a, _)| a.clone())
            .take(2)
            .collect();
        fired_once
            .into_iter()
            .map(|a| (a, "fired"))
            .chain(held.into_iter().map(|a| (a, "cancelled")))
            .collect()
    };
    for (id, want) in &samples {
        let views: Vec<serde_json::Value> = admin
            .iter()
            .map(|p| match http_json(*p, &format!("/delay/{id}")) {
                Some((200, v)) => v,
                other => panic!("GET /delay/{id} on admin port {p}: {other:?}"),
            })
            .collect();
        for v in &views {
            assert_eq!(v["state"], *want, "{id}: {views:?}");
            assert!(v["journalPartition"].is_i64(), "{id}: {v}");
            assert!(
                v["servedBy"].as_str().is_some_and(|s| !s.is_empty()),
                "{id}: {v}"
            );
            assert_eq!(
                v["journalPartition"], views[0]["journalPartition"],
                "{views:?}"
            );
            assert_eq!(v["servedBy"], views[0]["servedBy"], "{views:?}");
        }
    }
    // Dead letters are served per node from its owned partitions (none here: every fire was
    // stored); the endpoint answers on every node in cluster mode.
    for p in &admin {
        match http_json(*p, "/delay/dead") {
            Some((200, v)) => assert_eq!(v, serde_json::json!([]), "admin port {p}"),
            other => panic!("GET /delay/dead on admin port {p}: {other:?}"),
        }
    }
}

/// A cluster-mode node in this process: once its journal partitions are active it stops on
/// request, and afterwards no task it spawned is alive, neither in its tracker nor on the
/// runtime (the membership poll loop, the partitions' owner tasks and their schedulers'
/// tasks, tombstones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cluster_task_outlives_the_server() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let names = Journal::fresh();
    let (journal, group) = (&names.topic, &names.group);
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = local_config(&kafka, &[], &names.delay_section());
    let local = dir.path().join("local.json");
    std::fs::write(&local, doc).expect("write local.json");
    let (port, admin_port) = (free_port(), free_port());
    let yaml = format!(
        "host: 127.0.0.1\nport: {port}\nadminPort: {admin_port}\n\
         server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n\
         dataDir: \"{}\"\nlocalConfig: \"{}\"\n\
         scheduler:\n  cluster:\n    enabled: true\n    journalCluster: K_test\n    \
         journalTopic: \"{journal}\"\n    journalPartitions: 2\n    group: \"{group}\"\n",
        dir.path().join("data").display(),
        local.display()
    );
    let conf = dir.path().join("carrera.yaml");
    std::fs::write(&conf, yaml).expect("write carrera.yaml");
    let (settings, _) = pproxy::config::settings::Settings::load(&conf).expect("settings");

    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let tasks = pproxy::lifecycle::Tasks::new();
    let (stop, stops) = pproxy::runtime::Stops::channel();
    let server = tokio::spawn(pproxy::runtime::serve(
        settings,
        Some(conf),
        None,
        stops,
        tasks.clone(),
    ));
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(!server.is_finished(), "serve ended during start-up");
        let view = tokio::task::spawn_blocking(move || cluster_view(admin_port))
            .await
            .expect("view");
        if active_partitions(&[view]).len() == 2 {
            break;
        }
        assert!(
            Instant::now() < until,
            "journal partitions not active after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stop.send(()).await.expect("stop request");
    let result = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("serve did not return within 60 s")
        .expect("serve panicked");
    assert!(result.is_ok(), "serve: {result:?}");
    assert_eq!(tasks.running(), 0, "tracked tasks left");
    // Tasks spawned past the tracker show up here: give the runtime a moment to reap.
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..100 {
        if alive <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(
        alive, before,
        "tasks still alive on the runtime after serve returned"
    );
}

/// How long the group is left to settle after a failover before the graceful stop.
const SETTLE: Duration = Duration::from_secs(2);

/// Polls `GET /delay/cluster` on `ports` every 20 ms until every journal partition is active on
/// one of them, up to `bound`; the time from `from` (epoch ms) to that round, ms.
fn all_active_after(ports: &[u16], partitions: usize, from: i64, bound: Duration) -> Option<i64> {
    let until = Instant::now() + bound;
    while Instant::now() < until {
        let round: Vec<_> = ports.iter().map(|p| cluster_view(*p)).collect();
        if active_partitions(&round).len() == partitions {
            return Some(now_ms() - from);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The ownership lines of a node log ("partition assigned", "partition active" with its
/// claim, open and replay times) logged in `[from, to)` (epoch ms), each as "+ms since
/// `from`: line".
fn takeover_lines(log: &str, from: i64, to: i64) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("partition assigned") || l.contains("partition active"))
        .filter_map(|l| {
            let (stamp, rest) = l.split_once(' ')?;
            let t = chrono::DateTime::parse_from_rfc3339(stamp)
                .ok()?
                .timestamp_millis();
            let what = rest.split_once("delay cluster: ").map_or(rest, |x| x.1);
            (from..to)
                .contains(&t)
                .then(|| format!("+{} ms: {what}", t - from))
        })
        .collect()
}

/// Failover and handover with the shipped `scheduler.cluster` defaults (session timeout and
/// heartbeat not set), as a new user runs it on a stock broker (issue #20): three nodes, one
/// SIGKILLed, then one SIGTERMed. Asserted: after the kill the survivors have every journal
/// partition active within the session timeout + 500 ms (issue #20); after the SIGTERM the last node has them all within 1 s (the leaving node leaves the
/// group, nobody waits for its session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_defaults_fail_over_within_the_session_and_hand_over_on_sigterm() {
    // Timed: runs alone in this binary (every other test holds STACK for reading).
    let _alone = STACK.write().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let defaults = pproxy::config::settings::ClusterSettings::default();
    let session_ms = defaults.session_timeout_ms.as_millis() as i64;
    let min_session = broker_min_session_ms(&kafka).await;
    if min_session > session_ms {
        println!(
            "cluster: skipped: the broker's group.min.session.timeout.ms ({min_session}) refuses \
             the default session timeout ({session_ms} ms)"
        );
        return;
    }
    let names = Journal::fresh();
    let (journal, group) = (&names.topic, &names.group);
    let doc = local_config(&kafka, &[], &names.delay_section());
    let yaml = format!(
        "localConfig: local.json\n\
         scheduler:\n  cluster:\n    enabled: true\n    journalCluster: K_test\n    \
         journalTopic: \"{journal}\"\n    journalPartitions: {JOURNAL_PARTITIONS}\n    \
         group: \"{group}\"\n"
    );
    let mut proxies: Vec<Proxy> = (0..NODES)
        .map(|_| Proxy::start_with_files(&yaml, &[("local.json", doc.clone())]))
        .collect();
    let admin: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    let all = JOURNAL_PARTITIONS as usize;
    let steady = all_active_after(&admin, all, now_ms(), Duration::from_secs(60));
    assert!(
        steady.is_some(),
        "journal partitions not all active after 60 s"
    );
    // Measured on a settled group, as a node dies in production: every node owns something,
    // and the last rebalance is SETTLE old (a member lost within about 0.5 s of a rebalance
    // is noticed about 0.5 s later).
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let owning = admin
            .iter()
            .filter(|p| cluster_view(**p).is_some_and(|v| v.values().any(|(_, s)| s == "active")))
            .count();
        if owning == NODES {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE);

    // SIGKILL node 0: its partitions wait for its session to expire.
    let killed_at = now_ms();
    proxies[0].kill9();
    let failover = all_active_after(&admin[1..], all, killed_at, Duration::from_secs(30));
    // SIGTERM node 1 (on a thread: `stop` waits for the exit): node 2 takes everything. Once
    // the group settled again (a leave right after a rebalance measured about 0.5 s slower).
    std::thread::sleep(SETTLE);
    let mut leaving = proxies.remove(1);
    let termed_at = now_ms();
    let stopper = std::thread::spawn(move || (leaving.stop(), leaving.log()));
    let handover = all_active_after(&admin[2..], all, termed_at, Duration::from_secs(30));
    let (exit, leaving_log) = stopper.join().expect("stop thread");
    println!(
        "cluster: shipped defaults (session {} ms, heartbeat {} ms): kill -9 -> every partition \
         active on the survivors after {failover:?} ms; SIGTERM -> every partition active on the \
         last node after {handover:?} ms (exit code {exit:?})",
        session_ms,
        defaults.heartbeat_ms.as_millis()
    );
    // Where the failover went: the survivors' assignments and activations after the kill.
    for (node, log) in [(1, leaving_log.clone()), (2, proxies[1].log())] {
        for line in takeover_lines(&log, killed_at, termed_at) {
            println!("cluster: after the kill, node {node}: {line}");
        }
    }
    let logs = || {
        let mut logs: Vec<String> = proxies.iter().map(Proxy::log).collect();
        logs.push(leaving_log.clone());
        keep_logs(journal, &logs)
    };
    // The replay floor is gone: taking over these (nearly empty) partitions replays in
    // proportion to what they hold, not the 500 ms a fresh consumer's offset lookup took.
    let (_, last) = http_json(admin[2], "/delay/cluster").expect("cluster view");
    let replays: Vec<i64> = last["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["replayMs"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(
        replays.len(),
        all,
        "every partition on the last node: {last}"
    );
    assert!(
        replays.iter().all(|ms| *ms < 250),
        "replay of near-empty partitions took {replays:?} ms; logs in {}",
        logs()
    );
    // Issue 20's bound. Measured 6.01-6.03 s when this test ran alone on the 2-core machine,
    // 5.96-6.86 s (5 of 13 over 6.5 s) while five other builds starved it of CPU: so the test
    // runs alone (STACK) and is to be read together with the load of the machine it ran on
    // (docs/RELIABILITY.md "Failover breakdown").
    let failover = failover.unwrap_or(i64::MAX);
    assert!(
        failover <= session_ms + 500,
        "failover took {failover} ms, more than the session timeout + 500 ms (load average \
         {}); logs in {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
        logs()
    );
    let handover = handover.unwrap_or(i64::MAX);
    assert!(
        handover <= 1000,
        "SIGTERM handover took {handover} ms, more than 1 s; logs in {}",
        logs()
    );
}
