//! The store alone on an ext4 whose journal aborts under load, counted, not timed: a writer
//! thread applies groups of adds and notes each group's ids once its flush returned; after a
//! random 0.3-0.7 s the file system is aborted (`mount -o remount,abort`, what ext4 does on an
//! I/O error with `errors=remount-ro`), then unmounted, checked with `e2fsck -fy` and mounted
//! again, and every noted add must be in the reopened store. Many aborts per engine, a fresh
//! image each time.
//!
//! What it caught on sled (whose case is therefore kept but not run by default): sled panicked
//! while closing when only our fsync or the journal probe had failed (`SledKv`'s `Drop`), and
//! once hung for good in its flush after the abort. What it did not reproduce: the `fsync` that answered 0 for
//! writes the abort then lost (docs/RELIABILITY.md, "Disk trouble", change 5) did not show
//! here without the probe (0 of 20 aborts on sled), so the probe's premise is tested by
//! `probe::tests` and measured by `docs/investigations/fsync-abort-race.py`. Needs root for
//! the mounts (CI
//! runs as root) and `mkfs.ext4`, `e2fsck`; `SCHED_STORE_ABORT_ITERS` sets the number of
//! aborts (default 15).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scheduler::internals::{Db, Mutation, Store};
use scheduler::EngineKind;
use scheduler::{DelayId, Record};

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{cmd} {args:?}: {} {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn must(cmd: &str, args: &[&str]) {
    if let Err(e) = sh(cmd, args) {
        panic!("{e}");
    }
}

/// Unmounts `mnt`, retrying for up to 30 s while the closed store's files are released.
fn umount(mnt: &str, when: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while let Err(e) = sh("umount", &[mnt]) {
        assert!(Instant::now() < until, "umount {when}: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add(n: u64) -> (String, Mutation) {
    let id = DelayId {
        timestamp: 1_800_000_000_000 + n as i64,
        dtype: 2,
        expire: 1_800_172_800_000 + n as i64,
        times: 0,
        timed: 0,
        interval: 0,
        seq: 0,
        uuid: format!("00000000-0000-4000-8000-{n:012x}"),
    };
    let record = Record {
        topic: "t".into(),
        tags: None,
        properties: vec![],
        body: vec![b'x'; 200],
        id: id.clone(),
        next_index: 0,
        next_due_ms: id.timestamp,
        attempts: 0,
        first_failure_ms: 0,
        created_ms: 0,
        owner: String::new(),
        caught_up: 0,
    };
    let id = id.to_string();
    (
        id.clone(),
        Mutation::Add {
            id,
            record: Box::new(record),
        },
    )
}

/// Groups of 16 adds, each applied and flushed; the ids of a group are noted once its flush
/// returned. Stops at the first error or when told to.
fn writer(store: Arc<Db>, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> Arc<Db> {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let group: Vec<(String, Mutation)> = (0..16)
            .map(|_| {
                n += 1;
                add(n)
            })
            .collect();
        let refs: Vec<&Mutation> = group.iter().map(|(_, m)| m).collect();
        if store.apply_group(&refs).is_err() || store.flush().is_err() {
            break;
        }
        acked
            .lock()
            .unwrap()
            .extend(group.into_iter().map(|(id, _)| id));
    }
    store
}

/// One abort on a fresh image; answers (acknowledged adds, lost ones).
fn one_abort(base: &Path, kind: EngineKind, wait: Duration) -> (usize, Vec<String>) {
    let img = base.join("disk.img");
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let (img_s, mnt_s) = (img.to_str().unwrap(), mnt.to_str().unwrap());
    must("mkfs.ext4", &["-q", "-F", img_s]);
    must("mount", &["-o", "loop,errors=remount-ro", img_s, mnt_s]);
    let dir = mnt.join("store");
    let store = Store::open_with(&dir, 16 << 20, kind)
        .and_then(|s| s.db())
        .expect("open");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || writer(store, acked, stop))
    };
    std::thread::sleep(wait);
    must("mount", &["-o", "remount,abort", mnt_s]);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    drop(w.join().expect("writer"));
    umount(mnt_s, "after the abort");
    let fsck = Command::new("e2fsck")
        .args(["-fy", img_s])
        .output()
        .expect("e2fsck");
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    must("mount", &["-o", "loop", img_s, mnt_s]);
    let store = Store::open_with(&dir, 16 << 20, kind)
        .and_then(|s| s.db())
        .expect("reopen after the repair");
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let lost: Vec<String> = acked
        .iter()
        .filter(|id| {
            store.record(id).expect("read").is_none() && store.done(id).expect("read").is_none()
        })
        .cloned()
        .collect();
    drop(store);
    umount(mnt_s, "after the check");
    std::fs::remove_file(&img).unwrap();
    (acked.len(), lost)
}

fn abort_loop(kind: EngineKind) {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        println!("SKIPPED: mounting ext4 images needs root; CI runs as root");
        return;
    }
    let iterations: usize = std::env::var("SCHED_STORE_ABORT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // The image lives in a tmpfs: nothing touches the real disk.
    let base = tempfile::tempdir().expect("tempdir");
    let base_s = base.path().to_str().unwrap().to_string();
    must(
        "mount",
        &["-t", "tmpfs", "-o", "size=96m", "tmpfs", &base_s],
    );
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut total = 0;
    let mut failures = Vec::new();
    for it in 0..iterations {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(300 + (seed >> 33) % 400);
        let (acked, lost) = one_abort(base.path(), kind, wait);
        assert!(acked > 0, "abort {}: nothing was acknowledged", it + 1);
        total += acked;
        if !lost.is_empty() {
            failures.push(format!(
                "abort {}: {} of {acked} acknowledged adds lost, e.g. {:?}",
                it + 1,
                lost.len(),
                &lost[..lost.len().min(2)]
            ));
        }
    }
    let _ = sh("umount", &[&base_s]);
    assert!(
        failures.is_empty(),
        "{} engine: {} of {iterations} aborts lost acknowledged adds: {failures:?}",
        kind.name(),
        failures.len()
    );
    println!(
        "{}: {iterations} aborts, {total} acknowledged adds, none lost",
        kind.name()
    );
}

/// Kept, not run by default: sled 0.34.7 once hung for good in its flush after the abort
/// (CI, 2026-12-03: the writer waited in `make_stable` for a log position no I/O thread would
/// write any more, about 1 abort in 50), which would stall the suite. By hand:
/// `cargo test -p scheduler --test store_abort -- --ignored --nocapture`.
#[test]
#[ignore = "sled 0.34.7 can hang for good in its flush after an ext4 abort (docs/RELIABILITY.md)"]
fn sled_loses_no_acknowledged_add_when_ext4_aborts() {
    abort_loop(EngineKind::Sled);
}

#[test]
fn redb_loses_no_acknowledged_add_when_ext4_aborts() {
    abort_loop(EngineKind::Redb);
}
