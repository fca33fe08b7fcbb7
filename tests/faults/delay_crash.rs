//! Crash safety of the delay path (delay.md §6), counted, not timed: SIGKILL pproxy at random
//! points while clients add and cancel and occurrences fire into the real Kafka, restart on the
//! same data directory, and check after the last restart:
//! 1. every add answered 0 fires at least once (every occurrence, for loops, except one that
//!    catch-up may skip because the previous occurrence fired after its due time);
//! 2. nothing fires before its due time (Kafka CreateTime >= due);
//! 3. every cancel answered 0 (made >= 1 s before the due time) holds;
//! 4. duplicates happen only for occurrences in flight at a kill: the first copy of every
//!    duplicated occurrence reached Kafka within `IN_FLIGHT_WINDOW_MS` before a kill (handed to
//!    the writer, its completion not yet committed), and every later copy after that kill.
//!
//! Iterations: PPROXY_CRASH_ITERS (default 5; scripts/soak-delay-crash.sh runs more).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use pproxy::client::Client;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Protocol};
use rand::{Rng, SeedableRng};

/// How long before a kill a fire may still lack its committed completion: the record's Kafka
/// timestamp is taken when it is produced, then come the broker's acknowledgement and the group
/// commit (milliseconds; tens under load). A copy older than this before the next kill was
/// completed durably and must not fire again; each iteration runs longer than this, so a
/// completion that is never persisted would show up here.
const IN_FLIGHT_WINDOW_MS: i64 = 1_000;

#[derive(Default)]
struct Ledger {
    /// Add ids whose cancel was acked.
    cancelled: HashSet<String>,
    /// Add ids a cancel was sent for (acked or not): their occurrences need not fire.
    cancel_tried: HashSet<String>,
    /// Acked add ids with their occurrence ids and due times.
    adds: HashMap<String, Vec<(String, i64)>>,
    acked_adds: u64,
    acked_cancels: u64,
}

async fn client_load(addr: String, topic: String, seed: u64, ledger: Arc<Mutex<Ledger>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Ok(mut c) = Client::connect(&addr, Protocol::Compact, Duration::from_secs(5)).await else {
        return;
    };
    let mut mine: Vec<(String, i64)> = Vec::new();
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        let cancel_candidate = mine.iter().position(|(_, due)| *due > now + 1500);
        if rng.random_bool(0.25) && cancel_candidate.is_some() {
            let (id, _) = mine.swap_remove(cancel_candidate.unwrap_or(0));
            ledger.lock().unwrap().cancel_tried.insert(id.clone());
            match c.call(&delay_cancel(&topic, &id)).await {
                Ok(Reply::Result { code: 0, .. }) => {
                    let mut l = ledger.lock().unwrap();
                    l.cancelled.insert(id);
                    l.acked_cancels += 1;
                }
                Ok(_) => {}
                Err(_) => return, // killed
            }
            continue;
        }
        let looped = rng.random_bool(0.15);
        let due = now + rng.random_range(200..4000);
        let uuid = uuid::Uuid::new_v4().to_string();
        match c
            .call(&Call::SendDelaySync(
                Some(looped_or_once_add(&topic, &uuid, due, looped)),
                3000,
            ))
            .await
        {
            Ok(Reply::Result {
                code: 0,
                delay_id: Some(id),
                ..
            }) => {
                let occurrences = occurrence_ids(&id, due, looped, 3000);
                let mut l = ledger.lock().unwrap();
                l.acked_adds += 1;
                l.adds.insert(id.clone(), occurrences);
                drop(l);
                mine.push((id, due));
            }
            Ok(other) => panic!("unexpected answer {other:?}"),
            Err(_) => return, // killed
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_adds_cancels_and_fires_loses_nothing() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let iterations: usize = std::env::var("PPROXY_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("PPROXY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test: {iterations} iterations, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let topic = unique_topic("crash");
    create_topic(&kafka, &topic, 3).await;
    let doc = local_config(&kafka, &[(&topic, r#","delayTopic":true"#)], "");
    let mut proxy = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Wall-clock time right after each kill: nothing the killed process sent is later.
    let mut kills: Vec<i64> = Vec::new();

    for i in 0..iterations {
        if i > 0 {
            proxy.restart();
        }
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                tokio::spawn(client_load(
                    proxy.addr.clone(),
                    topic.clone(),
                    rng.random(),
                    ledger.clone(),
                ))
            })
            .collect();
        // Longer than the in-flight window, so fires completed well before a kill exist to check.
        let run_ms = rng.random_range(800..2500);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        proxy.kill9();
        kills.push(chrono::Utc::now().timestamp_millis());
        // Clients see the kill as transport errors and stop.
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
    proxy.restart();

    let (must_fire, cancelled, acked_adds, acked_cancels) = {
        let l = ledger.lock().unwrap();
        let mut must: HashMap<String, i64> = HashMap::new();
        for (add, occs) in &l.adds {
            if l.cancel_tried.contains(add) {
                continue;
            }
            for (o, due) in occs {
                must.insert(o.clone(), *due);
            }
        }
        let cancelled: HashSet<String> = l
            .cancelled
            .iter()
            .flat_map(|a| l.adds.get(a).cloned().unwrap_or_default())
            .map(|(o, _)| o)
            .collect();
        (must, cancelled, l.acked_adds, l.acked_cancels)
    };
    assert!(acked_adds > 20, "the load did run: {acked_adds} adds");

    // Wait until everything due has fired and the scheduler is idle.
    let latest_due = must_fire.values().copied().max().unwrap_or(0);
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        let (_, body) = proxy.http_get("/status").expect("status");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let pending = v["scheduler"]["pending"].as_i64().unwrap_or(-1);
        let inflight = v["scheduler"]["inflight"].as_i64().unwrap_or(-1);
        if now > latest_due + 1000 && pending == 0 && inflight == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "scheduler did not drain: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let got = consume(&kafka, &topic, must_fire.len(), Duration::from_secs(30));
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &got {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or(b"")).into_owned();
        seen.entry(key).or_default().push(r.timestamp_ms);
    }
    // Every acked add that no cancel was sent for fires its occurrence 0; occurrence k of a loop
    // must fire too unless occurrence k-1 last fired after occurrence k's due time: then
    // catch-up may skip it (delay.md 5.3, overdue by more than lateToleranceMs when the
    // completion of k-1 computes it), as after a slow restart.
    let OccurrenceCheck {
        must_fire: required,
        may_skip,
        skipped,
        missing,
    } = {
        let l = ledger.lock().unwrap();
        check_occurrences(&l.adds, &l.cancel_tried, &seen)
    };
    assert!(
        missing.is_empty(),
        "{} acknowledged occurrences (of {required}) never fired: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (key, times) in &seen {
        if let Some(due) = must_fire.get(key) {
            for t in times {
                assert!(*t >= *due, "{key} fired {} ms early", due - t);
            }
        }
        assert!(!cancelled.contains(key), "cancelled {key} fired");
    }
    let duplicates: usize = seen.values().map(|t| t.len() - 1).sum();
    // Duplicates only for what was in flight at a kill (delay.md §6.3).
    let mut per_kill = vec![0usize; kills.len()];
    for (key, times) in &seen {
        if times.len() < 2 {
            continue;
        }
        let mut times = times.clone();
        times.sort_unstable();
        let first = times[0];
        let kill = kills.iter().position(|k| *k >= first);
        let Some(kill) = kill else {
            panic!(
                "{key} fired {} times, all after the last kill: {times:?}",
                times.len()
            );
        };
        assert!(
            kills[kill] - first <= IN_FLIGHT_WINDOW_MS,
            "{key} fired again after kill {kill} although its first copy reached Kafka {} ms \
             before it (in-flight window {IN_FLIGHT_WINDOW_MS} ms): {times:?}, kills {kills:?}",
            kills[kill] - first
        );
        assert!(
            times[1..].iter().all(|t| *t >= kills[kill]),
            "{key}: a second copy before the kill that explains the first: {times:?}, kills {kills:?}"
        );
        per_kill[kill] += times.len() - 1;
    }
    println!(
        "crash test: {iterations} kills, {acked_adds} acked adds, {acked_cancels} acked cancels, \
         {required} occurrences required and fired, {may_skip} loop occurrences due after a late \
         fire of the previous one ({skipped} of them skipped by catch-up), {} records consumed, \
         {duplicates} duplicates (per kill {per_kill:?}), each of an occurrence in flight at a kill",
        got.len()
    );
}
