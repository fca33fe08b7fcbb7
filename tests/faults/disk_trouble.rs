//! Disk trouble on the scheduler's data directory (issue #7 part 6), counted, not timed:
//! clients add and cancel delay messages (one connection each, for the whole run) while the
//! data directory runs out of space or turns read-only, and after it is repaired. Checks:
//! 1. every request is answered, 0 or 10 only, on a connection that stays open;
//! 2. the trouble was visible (some requests answered 10, `/ready` 503 with "delay store failed");
//! 3. service resumes in the same process once the disk is repaired (an add answered 0 again);
//! 4. every add answered 0 (before, during or after) fires at least once, every occurrence of
//!    a loop; nothing fires before its due time (adds answered 10 included); every cancel
//!    answered 0 holds.
//!
//! 5. a flush that does not return (the filesystem frozen with `fsfreeze`, which blocks every
//!    write and fsync until thawed, as a hung device does) is detected: `/ready` 503 with
//!    "delay store stuck", adds and cancels answered 10 instead of the client's timeout, the
//!    `pproxy_delay_store_stuck` gauge at 1 and an error line; all of it clears once thawed.
//!
//! The data directory is a mount point made by the test, so it needs root (CI runs as root).
//! As another user the test prints SKIPPED and returns; as root a mount failure fails it.
//! Fires are read back from the real Kafka of `scripts/stack.sh` (PPROXY_TEST_KAFKA).
//! `cargo test --test disk_trouble -- --nocapture --test-threads 1` prints the figures.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::disk::*;
use crate::common::*;
use pproxy::client::Client;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Protocol};
use rand::{Rng, SeedableRng};

const PHASES: [&str; 3] = ["before", "during", "after"];

#[derive(Default)]
struct Ledger {
    /// Acked adds (add id -> occurrence ids with their due ms).
    adds: HashMap<String, Vec<(String, i64)>>,
    /// Due ms of every add sent, by body (uuid): nothing may fire before it.
    due_by_body: HashMap<String, i64>,
    /// Add ids a cancel was sent for (acked or not).
    cancel_tried: HashSet<String>,
    /// Add ids whose cancel was acked.
    cancelled: HashSet<String>,
    /// Answers per phase: [add 0, add 10, cancel 0, cancel 10].
    counts: [[u64; 4]; 3],
    /// Slowest answer per phase.
    slowest: [Duration; 3],
    /// When each acknowledged add and cancel was answered (epoch ms), by add id: for the report
    /// of anything that goes wrong.
    add_acked_ms: HashMap<String, i64>,
    cancel_acked_ms: HashMap<String, i64>,
    /// Phase and code of anything else (must stay empty).
    unexpected: Vec<String>,
    /// When the first add was answered 0 after the repair.
    first_ok_after_repair: Option<Instant>,
}

struct Load {
    ledger: Arc<Mutex<Ledger>>,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<u64, String>>>,
}

/// One client on one connection: adds (15 % loops), and cancels of its own adds due in more
/// than 1.5 s; returns the number of requests, or what went wrong.
async fn client(
    addr: String,
    topic: String,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Client::connect(&addr, Protocol::Compact, Duration::from_secs(10))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut mine: Vec<(String, i64)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let now = chrono::Utc::now().timestamp_millis();
        let asked = Instant::now();
        let candidate = mine.iter().position(|(_, due)| *due > now + 1500);
        if let (true, Some(i)) = (rng.random_bool(0.25), candidate) {
            let (id, _) = mine.swap_remove(i);
            ledger.lock().unwrap().cancel_tried.insert(id.clone());
            let reply = c
                .call(&delay_cancel(&topic, &id))
                .await
                .map_err(|e| format!("cancel: no answer: {e}"))?;
            // Counted in the phase the answer arrived in.
            let ph = phase.load(Ordering::Acquire);
            let mut l = ledger.lock().unwrap();
            l.slowest[ph] = l.slowest[ph].max(asked.elapsed());
            match reply {
                Reply::Result { code: 0, .. } => {
                    l.counts[ph][2] += 1;
                    l.cancel_acked_ms
                        .insert(id.clone(), chrono::Utc::now().timestamp_millis());
                    l.cancelled.insert(id);
                }
                Reply::Result { code: 10, .. } => l.counts[ph][3] += 1,
                other => l
                    .unexpected
                    .push(format!("cancel, phase {}: {other:?}", PHASES[ph])),
            }
            continue;
        }
        let looped = rng.random_bool(0.15);
        let due = now + rng.random_range(500..4000);
        let uuid = uuid::Uuid::new_v4().to_string();
        ledger.lock().unwrap().due_by_body.insert(uuid.clone(), due);
        let reply = c
            .call(&Call::SendDelaySync(
                Some(looped_or_once_add(&topic, &uuid, due, looped)),
                3000,
            ))
            .await
            .map_err(|e| format!("add: no answer: {e}"))?;
        let ph = phase.load(Ordering::Acquire);
        let failed = matches!(reply, Reply::Result { code: 10, .. });
        {
            let mut l = ledger.lock().unwrap();
            l.slowest[ph] = l.slowest[ph].max(asked.elapsed());
            match reply {
                Reply::Result {
                    code: 0,
                    delay_id: Some(id),
                    ..
                } => {
                    l.counts[ph][0] += 1;
                    if ph == 2 && l.first_ok_after_repair.is_none() {
                        l.first_ok_after_repair = Some(Instant::now());
                    }
                    l.adds
                        .insert(id.clone(), occurrence_ids(&id, due, looped, 3000));
                    l.add_acked_ms
                        .insert(id.clone(), chrono::Utc::now().timestamp_millis());
                    mine.push((id, due));
                }
                Reply::Result { code: 10, .. } => l.counts[ph][1] += 1,
                other => l
                    .unexpected
                    .push(format!("add, phase {}: {other:?}", PHASES[ph])),
            }
        }
        if failed {
            // Do not spin on a failed store: the SDKs back off too.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(n)
}

impl Load {
    fn start(proxy: &Proxy, topic: &str, seed: u64, clients: usize) -> Load {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let tasks = (0..clients)
            .map(|_| {
                tokio::spawn(client(
                    proxy.addr.clone(),
                    topic.to_string(),
                    rng.random(),
                    ledger.clone(),
                    phase.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Load {
            ledger,
            phase,
            stop,
            tasks,
        }
    }

    fn set_phase(&self, p: usize) {
        self.phase.store(p, Ordering::Release);
    }

    fn counts(&self, p: usize) -> [u64; 4] {
        self.ledger.lock().unwrap().counts[p]
    }

    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            match t.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("client failed: {e}"),
                Err(e) => panic!("client panicked: {e}"),
            }
        }
        Arc::try_unwrap(self.ledger)
            .ok()
            .expect("clients done")
            .into_inner()
            .unwrap()
    }
}

fn status(proxy: &Proxy) -> serde_json::Value {
    let (_, body) = proxy.http_get("/status").expect("status");
    serde_json::from_str(&body).expect("status json")
}

/// Waits (bounded) until `cond` holds on the `/ready` answer (status, body).
async fn wait_ready(proxy: &Proxy, what: &str, cond: impl Fn(u16, &str) -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((code, body)) = proxy.http_get("/ready") {
            if cond(code, &body) {
                return;
            }
        }
        if Instant::now() > until {
            let log = proxy.log();
            // Without the one-line-per-request noise.
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.contains("request failed") && !l.contains("delay storage failure"))
                .take(40)
                .collect();
            panic!(
                "{what}: /ready never did; log tail (newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every add answered 0 is due and the scheduler is idle, then reads the topic and
/// checks the firing guarantees; prints the figures.
async fn check_fires(kafka: &str, topic: &str, proxy: &Proxy, l: &Ledger, name: &str) {
    assert!(
        l.unexpected.is_empty(),
        "answers other than 0 and 10: {:?}",
        &l.unexpected[..l.unexpected.len().min(5)]
    );
    let cancelled: HashSet<&String> = l
        .cancelled
        .iter()
        .flat_map(|a| l.adds.get(a).into_iter().flatten().map(|(o, _)| o))
        .collect();
    let latest_due = l.due_by_body.values().copied().max().unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        let v = status(proxy);
        let pending = v["scheduler"]["pending"].as_i64().unwrap_or(-1);
        let inflight = v["scheduler"]["inflight"].as_i64().unwrap_or(-1);
        if now > latest_due + 1000 && pending == 0 && inflight == 0 {
            break;
        }
        assert!(Instant::now() < until, "scheduler did not drain: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let occurrences: usize = l.adds.values().map(Vec::len).sum();
    let mut got = consume(kafka, topic, occurrences, Duration::from_secs(30));
    let fired: HashSet<Vec<u8>> = got.iter().filter_map(|r| r.key.clone()).collect();
    if l.adds
        .iter()
        .filter(|(add, _)| !l.cancel_tried.contains(*add))
        .any(|(_, occ)| !fired.contains(occ[0].0.as_bytes()))
    {
        // Something looks missing: read the whole topic for 10 s before believing it.
        got = consume(kafka, topic, usize::MAX, Duration::from_secs(10));
    }
    // Occurrence id -> CreateTime of each record (when it was handed to the producer).
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut early = Vec::new();
    let mut cancel_broken = Vec::new();
    for r in &got {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or(b"")).into_owned();
        let body = String::from_utf8_lossy(&r.value).into_owned();
        assert!(
            l.due_by_body.contains_key(&body),
            "{key}: fired a body never sent"
        );
        // The key is the occurrence id: it carries the occurrence's due time.
        let due = scheduler::DelayId::parse(&key)
            .map(|d| scheduler::to_ms(d.timestamp))
            .expect("the key is an occurrence id");
        if r.timestamp_ms < due {
            early.push(format!("{key} {} ms early", due - r.timestamp_ms));
        }
        if cancelled.contains(&key) {
            cancel_broken.push(key.clone());
        }
        seen.entry(key).or_default().push(r.timestamp_ms);
    }
    // Every acked add that no cancel was sent for fires its occurrence 0. Occurrence k of a loop
    // must fire too when occurrence k-1 last fired no later than occurrence k's due time;
    // otherwise catch-up may skip it (delay.md 5.3: overdue by more than lateToleranceMs, 1 s,
    // when computed at the completion of k-1), as it does after the firing pause of an outage.
    let OccurrenceCheck {
        must_fire,
        may_skip,
        skipped,
        missing,
    } = check_occurrences(&l.adds, &l.cancel_tried, &seen);
    // What is known about the ones that went wrong: when their add and cancel were answered,
    // the node's view (operations.md 4, GET /delay/{id}) and its log lines.
    let log = proxy.log();
    let explain = |o: &String| {
        let uuid = &o[o.len().saturating_sub(36)..];
        let add = l.adds.keys().find(|a| a.ends_with(uuid));
        let acked = add.map(|a| (l.add_acked_ms.get(a), l.cancel_acked_ms.get(a)));
        let st = proxy.http_get(&format!("/delay/{o}")).map(|(_, b)| b);
        let lines: Vec<&str> = log.lines().filter(|line| line.contains(uuid)).collect();
        format!(
            "{o}: add/cancel answered 0 at {acked:?} ms; node: {}; log: {lines:?}",
            st.unwrap_or_default()
        )
    };
    let missing: Vec<String> = missing.iter().map(explain).collect();
    let cancel_broken: Vec<String> = cancel_broken.iter().map(explain).collect();
    assert!(
        missing.is_empty() && early.is_empty() && cancel_broken.is_empty(),
        "{name}: {} acknowledged occurrences (of {must_fire}) never fired: {:?}; {} fired early: \
         {:?}; {} acknowledged cancels (of {}) did not hold: {:?}",
        missing.len(),
        &missing[..missing.len().min(3)],
        early.len(),
        &early[..early.len().min(3)],
        cancel_broken.len(),
        l.cancelled.len(),
        &cancel_broken[..cancel_broken.len().min(3)]
    );
    let acked: HashSet<&String> = l.adds.values().flatten().map(|(o, _)| o).collect();
    let duplicates: usize = seen.values().map(|t| t.len() - 1).sum();
    let not_acked = seen.keys().filter(|k| !acked.contains(k)).count();
    println!(
        "{name}: answers [add 0, add 10, cancel 0, cancel 10] before {:?} during {:?} after {:?}, \
         slowest {:?}; \
         {must_fire} acked occurrences required, all fired; {may_skip} loop occurrences due \
         after a late fire of the previous one, {skipped} of them skipped by catch-up; {} records, \
         {duplicates} duplicates, {not_acked} occurrences of adds answered 10 fired; {} acked \
         cancels held",
        l.counts[0],
        l.counts[1],
        l.counts[2],
        l.slowest,
        got.len(),
        l.cancelled.len()
    );
}

fn seed() -> u64 {
    let seed = std::env::var("PPROXY_DISK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (PPROXY_DISK_SEED)");
    seed
}

/// Waits (at most 30 s) for the first add answered 0 after the repair at `repaired_at`, lets the
/// load run 2 s more and stops it: the ledger, the store's reopen count, and the time to that add.
async fn after_repair(
    proxy: &Proxy,
    load: Load,
    repaired_at: Instant,
) -> (Ledger, serde_json::Value, Duration) {
    let until = Instant::now() + Duration::from_secs(30);
    while load.ledger.lock().unwrap().first_ok_after_repair.is_none() {
        assert!(Instant::now() < until, "no add answered 0 after the repair");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reopens = status(proxy)["scheduler"]["storeReopens"].clone();
    let l = load.finish().await;
    let first_ok = l
        .first_ok_after_repair
        .map(|t| t.duration_since(repaired_at))
        .unwrap_or_default();
    (l, reopens, first_ok)
}

/// The checks both scenarios end with: the trouble was visible, service came back, every
/// acknowledged operation held in Kafka, and the process still exits cleanly.
async fn conclude(kafka: &str, topic: &str, mut proxy: Proxy, disk: Disk, l: &Ledger, what: &str) {
    let during = l.counts[1];
    assert!(
        during[1] + during[3] > 0,
        "{what}: the trouble was never visible: {during:?}"
    );
    assert!(
        l.counts[2][0] > 0,
        "{what}: adds answered 0 after the repair"
    );
    check_fires(kafka, topic, &proxy, l, what).await;
    assert_eq!(
        proxy.stop(),
        Some(0),
        "{what}: clean exit on SIGTERM after the trouble"
    );
    drop(proxy);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_10_loses_nothing_and_recovers_when_space_returns() {
    let _stack = STACK.read().await;
    disk_full_case("").await;
}

/// The same on the sled engine (the default until redb; stores it wrote keep it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_disk_full_answers_10_loses_nothing_and_recovers_when_space_returns() {
    let _stack = STACK.read().await;
    disk_full_case("scheduler:\n  storeEngine: sled\n").await;
}

async fn disk_full_case(yaml: &str) {
    if !root_or_skip("disk_full") {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let disk = Disk::tmpfs("16m");
    let (proxy, topic) = start_on_disk(&kafka, &disk, "diskfull", yaml).await;
    let load = Load::start(&proxy, &topic, seed(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        load.counts(0)[0] > 0,
        "adds answered 0 before the disk filled"
    );

    load.set_phase(1);
    let filled = fill(&disk.path("filler"));
    let full_at = Instant::now();
    wait_ready(&proxy, "disk full", |code, body| {
        code == 503 && body.contains("delay store failed")
    })
    .await;
    let failed_after = full_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = status(&proxy);
    assert_eq!(v["scheduler"]["storeFailed"], true, "{v}");

    std::fs::remove_file(disk.path("filler")).expect("remove filler");
    let space_at = Instant::now();
    load.set_phase(2);
    wait_ready(&proxy, "space back", |code, _| code == 200).await;
    let ready_after = space_at.elapsed();
    let (l, reopens, first_ok) = after_repair(&proxy, load, space_at).await;
    println!(
        "disk full: filler {filled} B; not ready {failed_after:?} after the fill; space back: \
         ready after {ready_after:?}, first add answered 0 after {first_ok:?}; store reopens {reopens}"
    );
    conclude(&kafka, &topic, proxy, disk, &l, "disk full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_filesystem_answers_10_loses_nothing_and_recovers_after_repair() {
    let _stack = STACK.read().await;
    read_only_case("").await;
}

/// The same on the sled engine (the default until redb; stores it wrote keep it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_read_only_filesystem_answers_10_loses_nothing_and_recovers_after_repair() {
    let _stack = STACK.read().await;
    read_only_case("scheduler:\n  storeEngine: sled\n").await;
}

async fn read_only_case(yaml: &str) {
    if !root_or_skip("read_only") {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let disk = Disk::ext4(48);
    let (proxy, topic) = start_on_disk(&kafka, &disk, "diskro", yaml).await;
    let load = Load::start(&proxy, &topic, seed(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(load.counts(0)[0] > 0, "adds answered 0 before the abort");

    // What ext4 does on an I/O error with errors=remount-ro: abort the journal, go read-only.
    // (`mount -o remount,ro` is refused while pproxy has the database open for writing, and an
    // aborted ext4 cannot be made writable in place: it has to be unmounted, checked, mounted.)
    load.set_phase(1);
    let mnt = disk.mnt.to_str().unwrap_or_default().to_string();
    must("mount", &["-o", "remount,abort", &mnt]);
    let ro_at = Instant::now();
    let ro_ms = chrono::Utc::now().timestamp_millis();
    wait_ready(&proxy, "read-only", |code, body| {
        code == 503 && body.contains("delay store failed")
    })
    .await;
    let failed_after = ro_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Repair: unmount (possible only because pproxy closed the failed database), fsck, mount.
    let until = Instant::now() + Duration::from_secs(30);
    while let Err(e) = run("umount", &[&mnt]) {
        assert!(
            Instant::now() < until,
            "pproxy keeps the data directory busy: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fsck = Command::new("e2fsck")
        .args(["-fy", disk.image().to_str().unwrap_or_default()])
        .output()
        .expect("e2fsck");
    // 0: clean, 1: errors corrected.
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    disk.mount_ext4();
    let repaired_at = Instant::now();
    let repaired_ms = chrono::Utc::now().timestamp_millis();
    load.set_phase(2);
    wait_ready(&proxy, "repaired", |code, _| code == 200).await;
    let ready_after = repaired_at.elapsed();
    let (l, reopens, first_ok) = after_repair(&proxy, load, repaired_at).await;
    let fsck_said: Vec<String> = String::from_utf8_lossy(&fsck.stdout)
        .lines()
        .filter(|l| !l.starts_with("Pass ") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    println!("read-only: e2fsck said {fsck_said:?}");
    println!(
        "read-only: aborted at {ro_ms} ms, not ready {failed_after:?} after; e2fsck exit {:?}; mounted again at {repaired_ms} ms, \
         then ready after {ready_after:?}, first add answered 0 after {first_ok:?}; store reopens {reopens}",
        fsck.status.code()
    );
    conclude(&kafka, &topic, proxy, disk, &l, "read-only").await;
}

/// Waits (at most 10 s) for a log line containing `what` (the watcher looks every 250 ms).
async fn wait_log(proxy: &Proxy, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains(what) {
        assert!(Instant::now() < until, "no log line says {what:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 20: a flush that never returns, caused for real by freezing the data directory's
/// filesystem, is detected, answered 10 at once, reported, and clears when the flush returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_flush_is_reported_answered_10_and_clears_when_it_returns() {
    let _stack = STACK.read().await;
    stuck_case("").await;
}

/// The same on the sled engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_a_stuck_flush_is_reported_answered_10_and_clears_when_it_returns() {
    let _stack = STACK.read().await;
    stuck_case("  storeEngine: sled\n").await;
}

/// `engine`: an extra line of the `scheduler` section.
async fn stuck_case(engine: &str) {
    if !root_or_skip("stuck_flush") {
        return;
    }
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let disk = Disk::ext4(48);
    let yaml = format!("scheduler:\n  storeStuckAfterMs: 1000\n{engine}");
    let (proxy, topic) = start_on_disk(&kafka, &disk, "diskstuck", &yaml).await;
    let load = Load::start(&proxy, &topic, seed(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(load.counts(0)[0] > 0, "adds answered 0 before the freeze");

    load.set_phase(1);
    let mnt = disk.mnt.to_str().unwrap_or_default().to_string();
    let frozen = Frozen::freeze(&mnt);
    let frozen_at = Instant::now();
    wait_ready(&proxy, "stuck", |code, body| {
        code == 503 && body.contains("delay store stuck")
    })
    .await;
    let stuck_after = frozen_at.elapsed();
    // A new add on a new connection, with a client timeout far beyond the bound: answered 10
    // (refused), not 12 (the timeout it would reach by waiting for the commit).
    let mut c = Client::connect(&proxy.addr, Protocol::Compact, Duration::from_secs(30))
        .await
        .expect("connect");
    let due = chrono::Utc::now().timestamp_millis() + 60_000;
    let add = Call::SendDelaySync(
        Some(looped_or_once_add(&topic, "stuck-probe", due, false)),
        20_000,
    );
    let asked = Instant::now();
    let reply = c.call(&add).await.expect("answered");
    let answered_in = asked.elapsed();
    assert!(
        matches!(reply, Reply::Result { code: 10, .. }),
        "an add while stuck is refused with 10: {reply:?}"
    );
    let (_, metrics) = proxy.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("pproxy_delay_store_stuck 1"),
        "the gauge says so"
    );
    let v = status(&proxy);
    assert!(
        v["scheduler"]["storeStuckMs"].as_i64() >= Some(1000),
        "status says for how long: {v}"
    );
    wait_log(&proxy, "delay store stuck").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    drop(frozen);
    let thawed_at = Instant::now();
    load.set_phase(2);
    wait_ready(&proxy, "thawed", |code, _| code == 200).await;
    let ready_after = thawed_at.elapsed();
    let (_, metrics) = proxy.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("pproxy_delay_store_stuck 0"),
        "the gauge clears"
    );
    let (l, _, first_ok) = after_repair(&proxy, load, thawed_at).await;
    wait_log(&proxy, "delay store no longer stuck").await;
    println!(
        "stuck flush: /ready 503 {stuck_after:?} after the freeze; an add answered 10 in \
         {answered_in:?}; thawed: ready after {ready_after:?}, first add answered 0 after \
         {first_ok:?}; during the freeze {:?} [add 0, add 10, cancel 0, cancel 10]",
        l.counts[1]
    );
    conclude(&kafka, &topic, proxy, disk, &l, "stuck flush").await;
}
