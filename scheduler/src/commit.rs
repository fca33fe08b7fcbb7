//! The committer: one thread owns every mutation, applies what is queued as one transaction and
//! makes the group durable with one flush before answering its adds, cancels and trims
//! (delay.md §8.2). Fire completions are answered once applied and ride on the next flush.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::store::{Applied, Db, Mutation, Store, StoreError};

/// Answer of one mutation, sent after its group is durable.
pub type Reply = Result<Applied, Arc<StoreError>>;

struct Job {
    m: Mutation,
    reply: Option<oneshot::Sender<Reply>>,
    /// Answer only after the group's flush (adds, cancels, trims); false for completions.
    durable: bool,
}

/// Counters the committer maintains.
#[derive(Default, Debug)]
pub struct CommitStats {
    /// Groups flushed.
    pub groups: AtomicU64,
    /// Mutations applied.
    pub mutations: AtomicU64,
    /// Storage failures.
    pub errors: AtomicU64,
    /// Duration of the last group including its flush, µs.
    pub last_group_us: AtomicU64,
    /// `fired_through_ms` as of the last group.
    pub fired_through_ms: AtomicI64,
    /// Group durations (apply + flush): counts per bucket of `GROUP_US_BUCKETS`, then +Inf.
    pub group_us_hist: [AtomicU64; 11],
    /// Sum of group durations, µs.
    pub group_us_sum: AtomicU64,
    /// Group sizes: counts per bucket of `GROUP_SIZE_BUCKETS`, then +Inf.
    pub group_size_hist: [AtomicU64; 12],
    /// Sum of group sizes.
    pub group_size_sum: AtomicU64,
    /// Time spent applying groups (transactions and watermark), µs.
    pub apply_us_sum: AtomicU64,
    /// Time spent in flushes, µs.
    pub flush_us_sum: AtomicU64,
    /// Flushes issued by the committer.
    pub flushes: AtomicU64,
    /// When the group in progress started, epoch ms; 0 while the committer waits for work.
    pub group_started_ms: AtomicI64,
}

/// Upper bounds (µs) of the group-duration buckets.
pub const GROUP_US_BUCKETS: [u64; 10] = [
    100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 100_000, 1_000_000,
];
/// Upper bounds of the group-size buckets.
pub const GROUP_SIZE_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096];

fn bucket(bounds: &[u64], v: u64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

/// Handle to the committer thread.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    /// Shared counters.
    pub stats: Arc<CommitStats>,
}

impl Committer {
    /// Starts the committer over `store`; groups hold at most `max_group` mutations.
    pub fn start(store: Store, max_group: usize, queue: usize) -> Committer {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let stats = Arc::new(CommitStats::default());
        let s2 = stats.clone();
        std::thread::Builder::new()
            .name("delay-commit".into())
            .spawn(move || run(store, rx, max_group.max(1), s2))
            .expect("spawn committer thread");
        Committer { tx, stats }
    }

    /// Applies `m` and waits until it is durable.
    pub async fn commit(&self, m: Mutation) -> Reply {
        let (tx, rx) = oneshot::channel();
        let closed = || Arc::new(StoreError::Stopped);
        self.tx
            .send(Job {
                m,
                reply: Some(tx),
                durable: true,
            })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Applies `m` without waiting for its flush (fire completions): the reply arrives as soon
    /// as the mutation is applied; a later flush makes it durable.
    pub async fn submit(&self, m: Mutation) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Job {
                m,
                reply: Some(tx),
                durable: false,
            })
            .await;
        rx
    }
}

/// Longest time a completion-only group may stay unflushed by the committer; bounds the
/// duplicate-fire window after a crash (delay.md §6.3).
const LAZY_FLUSH_MS: u128 = 200;

fn run(store: Store, mut rx: mpsc::Receiver<Job>, max_group: usize, stats: Arc<CommitStats>) {
    let mut group: Vec<Job> = Vec::with_capacity(max_group);
    let mut last_flush = Instant::now();
    // blocking_recv: this is a dedicated thread, not a runtime worker.
    while let Some(first) = rx.blocking_recv() {
        let started = Instant::now();
        // max(1): 0 means idle, and a clock before 1970 must not read as idle.
        stats
            .group_started_ms
            .store(now_ms().max(1), Ordering::Release);
        group.push(first);
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        // One database for the whole group: applied and flushed through the same handle, so a
        // reopen after an I/O error cannot slip in between (the group then fails as a whole).
        let pinned = store.db().map_err(Arc::new);
        let results = match &pinned {
            Ok(p) => apply_all(p, &group),
            Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
        };
        // The gauge follows the group; the stored watermark rode in the group's transaction.
        match pinned.as_ref().map(|db| db.first_due()) {
            Ok(Ok(Some(first_due))) => stats
                .fired_through_ms
                .store(first_due - 1, Ordering::Relaxed),
            _ => stats.fired_through_ms.store(now_ms(), Ordering::Relaxed),
        }
        let applied_at = Instant::now();
        stats.apply_us_sum.fetch_add(
            applied_at.duration_since(started).as_micros() as u64,
            Ordering::Relaxed,
        );
        let n = group.len() as u64;
        let mut failed = results.iter().any(Result::is_err);
        // Completions are answered once applied: the fire path does not wait for their flush
        // (delay.md §8.2); losing one in a crash only re-fires an in-flight occurrence (§6.3).
        let mut waiting = Vec::with_capacity(group.len());
        for (job, res) in group.drain(..).zip(results) {
            match job.reply {
                Some(reply) if !job.durable => {
                    let _ = reply.send(res);
                }
                reply => waiting.push((reply, res)),
            }
        }
        // Adds and cancels need the flush before their answer; a group of completions only is
        // left to the next flush unless the last one is older than LAZY_FLUSH_MS.
        if !waiting.is_empty() || last_flush.elapsed().as_millis() >= LAZY_FLUSH_MS {
            let flushed = match &pinned {
                Ok(p) => p.flush().map_err(Arc::new),
                Err(e) => Err(e.clone()),
            };
            last_flush = Instant::now();
            stats.flush_us_sum.fetch_add(
                last_flush.duration_since(applied_at).as_micros() as u64,
                Ordering::Relaxed,
            );
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            let flush_err = flushed.err();
            failed |= flush_err.is_some();
            for (reply, res) in waiting {
                let res = match &flush_err {
                    Some(e) => Err(e.clone()),
                    None => res,
                };
                if let Some(reply) = reply {
                    let _ = reply.send(res);
                }
            }
        }
        drop(pinned);
        stats.group_started_ms.store(0, Ordering::Release);
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.mutations.fetch_add(n, Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        stats.last_group_us.store(us, Ordering::Relaxed);
        stats.group_us_hist[bucket(&GROUP_US_BUCKETS, us)].fetch_add(1, Ordering::Relaxed);
        stats.group_us_sum.fetch_add(us, Ordering::Relaxed);
        stats.group_size_hist[bucket(&GROUP_SIZE_BUCKETS, n)].fetch_add(1, Ordering::Relaxed);
        stats.group_size_sum.fetch_add(n, Ordering::Relaxed);
        if failed {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Applies a group: every mutation but trims in one transaction, with the fired-through
/// watermark; if that fails, one by one, so a single bad record fails only itself.
fn apply_all(store: &Db, group: &[Job]) -> Vec<Reply> {
    let is_trim = |m: &Mutation| matches!(m, Mutation::Trim { .. });
    let batch: Vec<&Mutation> = group.iter().map(|j| &j.m).filter(|m| !is_trim(m)).collect();
    let first_due = store.first_due();
    let grouped = first_due.and_then(|first| store.apply_group_marked(&batch, first));
    let mut grouped = match grouped {
        Ok(v) if v.len() == batch.len() => Some(v.into_iter()),
        _ => None,
    };
    group
        .iter()
        .map(|j| match (&mut grouped, is_trim(&j.m)) {
            (Some(it), false) => it
                .next()
                .map_or_else(|| store.apply(&j.m).map_err(Arc::new), Ok),
            _ => store.apply(&j.m).map_err(Arc::new),
        })
        .collect()
}
