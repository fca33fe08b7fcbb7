//! The store alone under SIGKILL, counted, not timed: a child process applies groups of adds,
//! completions and cancels and prints the ids of each group once its flush returned; the parent
//! kills it at a random point, reopens the store and checks that every printed add is still
//! there (pending, or finished by a printed completion or cancel). Both engines, on one data
//! directory each, many kills in a row. The proxy-level crash test (tests/faults/delay_crash.rs in the
//! proxy) covers the same promise through the whole engine.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scheduler::internals::{FireEnd, Mutation, Store};
use scheduler::{CatchUp, EngineKind};
use scheduler::{DelayId, Record};

const CHILD_DIR: &str = "SCHED_STORE_CRASH_DIR";
const CHILD_ENGINE: &str = "SCHED_STORE_CRASH_ENGINE";
const CU: CatchUp = CatchUp {
    skip: true,
    late_tolerance_ms: 1000,
    max_catch_up: 100,
};

fn record(uuid: String, due_ms: i64) -> (String, Record) {
    let id = DelayId {
        timestamp: due_ms,
        dtype: 2,
        expire: due_ms + 172_800_000,
        times: 0,
        timed: 0,
        interval: 0,
        seq: 0,
        uuid,
    };
    let rec = Record {
        topic: "t".into(),
        tags: None,
        properties: vec![("k".into(), "v".into())],
        body: vec![b'x'; 200],
        id: id.clone(),
        next_index: 0,
        next_due_ms: due_ms,
        attempts: 0,
        first_failure_ms: 0,
        created_ms: 0,
        owner: String::new(),
        caught_up: 0,
    };
    (id.to_string(), rec)
}

/// The child: groups of 64 mutations (adds, plus completions and cancels of earlier adds), each
/// applied then flushed; after the flush, one line per mutation: `A id`, `C id` or `X id`.
fn child(dir: &Path, kind: EngineKind) {
    let store = Store::open_with(dir, 16 << 20, kind)
        .and_then(|s| s.db())
        .expect("child: open");
    let pid = std::process::id();
    let mut n: u64 = 0;
    let mut earlier: Vec<String> = Vec::new();
    let stdout = std::io::stdout();
    loop {
        let mut ms = Vec::with_capacity(64);
        let mut lines = Vec::with_capacity(64);
        for i in 0..64 {
            n += 1;
            if i % 4 == 3 && !earlier.is_empty() {
                let id = earlier.swap_remove((n as usize * 7919) % earlier.len());
                if i % 8 == 3 {
                    ms.push(Mutation::Complete {
                        id: id.clone(),
                        k: 0,
                        end: FireEnd::Ok,
                        now_ms: 1_700_000_000_000,
                        catch_up: CU,
                    });
                    lines.push(format!("C {id}"));
                } else {
                    ms.push(Mutation::Cancel {
                        id: id.clone(),
                        topic: "t".into(),
                        at_ms: 1_700_000_000_000,
                        principal: None,
                    });
                    lines.push(format!("X {id}"));
                }
                continue;
            }
            let uuid = format!("{:08x}-0000-4000-8000-{:012x}", pid, n);
            let (id, rec) = record(uuid, 1_800_000_000_000 + (n as i64 % 100_000));
            ms.push(Mutation::Add {
                id: id.clone(),
                record: Box::new(rec),
            });
            earlier.push(id.clone());
            lines.push(format!("A {id}"));
        }
        let refs: Vec<&Mutation> = ms.iter().collect();
        store.apply_group(&refs).expect("child: apply");
        store
            .set_meta("fired_through_ms", &(n as i64).to_be_bytes())
            .expect("child: meta");
        store.flush().expect("child: flush");
        use std::io::Write;
        let mut out = stdout.lock();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
}

/// Bytes under a directory.
fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The child's entry point, started by `kill_loop` with `--ignored --exact crash_child`.
#[test]
#[ignore = "the child process of the kill loops, not a test"]
fn crash_child() {
    if let (Ok(dir), Ok(kind)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ENGINE)) {
        child(
            Path::new(&dir),
            EngineKind::parse(&kind).expect("child: engine"),
        );
    }
}

fn kill_loop(kind: EngineKind) {
    let iterations: usize = std::env::var("SCHED_STORE_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let mut acked_adds: Vec<String> = Vec::new();
    let mut finished: std::collections::HashSet<String> = Default::default();
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut slowest_open = Duration::ZERO;
    for it in 0..iterations {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ENGINE, kind.name())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledged group (opening after a kill replays the journal),
        // then a pseudo-random 100-900 ms more.
        let mut lines: Vec<String> = Vec::new();
        let opened_by = Instant::now() + Duration::from_secs(120);
        while Instant::now() < opened_by {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let ack = l.starts_with("A ");
                    lines.push(l);
                    if ack {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(100 + (seed >> 33) % 800);
        let started = Instant::now();
        while started.elapsed() < wait {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                lines.push(l);
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let _ = reader.join();
        lines.extend(rx.try_iter());
        let before = acked_adds.len();
        for l in &lines {
            match l.split_once(' ') {
                Some(("A", id)) => acked_adds.push(id.to_string()),
                Some(("C" | "X", id)) => {
                    finished.insert(id.to_string());
                }
                _ => {}
            }
        }
        assert!(
            acked_adds.len() > before,
            "iteration {it}: the child acknowledged nothing; it printed {:?}",
            &lines[..lines.len().min(10)]
        );
        let t = Instant::now();
        let store = Store::open_with(dir.path(), 16 << 20, kind)
            .and_then(|s| s.db())
            .expect("reopen after SIGKILL");
        slowest_open = slowest_open.max(t.elapsed());
        let mut lost = Vec::new();
        for id in &acked_adds {
            let pending = store.record(id).expect("read").is_some();
            let done = store.done(id).expect("read").is_some();
            if !pending && !done {
                lost.push(id.clone());
            }
            if finished.contains(id) {
                assert!(
                    !pending,
                    "{id}: an acknowledged completion or cancel was undone"
                );
            }
        }
        assert!(
            lost.is_empty(),
            "{} engine, kill {}: {} of {} acknowledged adds lost, e.g. {:?}",
            kind.name(),
            it + 1,
            lost.len(),
            acked_adds.len(),
            &lost[..lost.len().min(3)]
        );
        drop(store);
    }
    println!(
        "{}: {iterations} kills, {} acknowledged adds, {} completions/cancels, none lost; \
         slowest reopen {:?}, store {} MB",
        kind.name(),
        acked_adds.len(),
        finished.len(),
        slowest_open,
        dir_bytes(dir.path()) >> 20
    );
}

#[test]
fn sled_store_survives_sigkill() {
    kill_loop(EngineKind::Sled);
}

#[test]
fn redb_store_survives_sigkill() {
    kill_loop(EngineKind::Redb);
}
