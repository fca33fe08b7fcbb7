//! The running scheduler: loader, timing wheel, firing through a sink, completions (delay.md §8).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::commit::{chrono_now_ms, CommitStats, Committer};
use crate::record::Record;
use crate::store::{
    due_key, Applied, CancelResult, CatchUp, DeadLetter, DoneEntry, FireEnd, Mutation, Store,
    StoreError,
};
use crate::wheel::{Wheel, MAX_SPAN};

/// Scheduler settings (`scheduler.*`, delay.md §7).
#[derive(Debug, Clone)]
pub struct Config {
    /// How far ahead records are loaded into memory, ms.
    pub near_window_ms: i64,
    /// Most records held in the wheel.
    pub max_loaded: usize,
    /// Records read per loader step.
    pub fire_batch_size: usize,
    /// Fires in flight.
    pub fire_concurrency: usize,
    /// First retry backoff, ms.
    pub fire_retry_initial_ms: i64,
    /// Retry backoff cap, ms.
    pub fire_retry_max_ms: i64,
    /// Retries stop this long after the due time, s.
    pub fire_retry_budget_sec: i64,
    /// How long finished ids are remembered, s.
    pub done_retention_sec: i64,
    /// Dead-letter retention, s.
    pub dead_retention_sec: i64,
    /// Pending cap (0 = none).
    pub max_pending: u64,
    /// Mutations per group commit.
    pub max_commit_group: usize,
    /// Loop catch-up policy.
    pub catch_up: CatchUp,
    /// Engine block/page cache, bytes.
    pub cache_bytes: u64,
    /// Engine of a new store (an existing store keeps its own).
    pub engine: crate::store::EngineKind,
    /// Fire pacing, fires per second; 0 = unlimited.
    pub fire_max_tps: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            near_window_ms: 60_000,
            max_loaded: 500_000,
            fire_batch_size: 256,
            fire_concurrency: 256,
            fire_retry_initial_ms: 100,
            fire_retry_max_ms: 30_000,
            fire_retry_budget_sec: 3600,
            done_retention_sec: 3600,
            dead_retention_sec: 604_800,
            max_pending: 0,
            max_commit_group: 4096,
            catch_up: CatchUp {
                skip: true,
                late_tolerance_ms: 1000,
                max_catch_up: 100,
            },
            cache_bytes: 128 << 20,
            engine: crate::store::EngineKind::default(),
            fire_max_tps: 0,
        }
    }
}

/// The message handed to the writer when an occurrence fires (delay.md §5.4).
#[derive(Debug, Clone)]
pub struct FireMessage {
    /// Delay topic.
    pub topic: String,
    /// Occurrence id (the message key).
    pub key: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Tags.
    pub tags: Option<String>,
    /// Properties (the sink adds `from_chronos`).
    pub properties: Vec<(String, String)>,
    /// Due time, epoch ms.
    pub due_ms: i64,
    /// Canonical (add) id of the record.
    pub id: String,
    /// Occurrence index fired.
    pub index: u64,
}

/// Where fired messages go: answers a wire result code and message.
pub trait Sink: Send + Sync + 'static {
    /// Hands one message to the writer; resolves to (code, msg).
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = (i32, String)> + Send>>;

    /// Record `id` finished (last occurrence fired or dead-lettered); its completion is stored.
    fn finished(&self, _id: &str) {}
}

/// Codes that dead-letter at once (delay.md §5.5).
pub fn is_permanent(code: i32) -> bool {
    matches!(code, 11 | 14 | 18 | 19)
}

/// Scheduler failures seen by add/cancel.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// Storage failed (code 10).
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
    /// `maxPending` reached (code 15).
    #[error("too many pending records")]
    Full,
    /// Shutting down.
    #[error("scheduler stopped")]
    Stopped,
}

/// Counters and gauges for metrics and status.
#[derive(Debug, Default)]
pub struct Stats {
    /// Pending records.
    pub pending: AtomicI64,
    /// New adds.
    pub adds: AtomicU64,
    /// Cancels by result: cancelled, unknown, after_finish, topic_mismatch, not_owner.
    pub cancels: [AtomicU64; 5],
    /// Fire attempts: ok, retry, dead.
    pub fired: [AtomicU64; 3],
    /// Loop occurrences skipped by catch-up.
    pub skipped: AtomicU64,
    /// Lateness histogram, buckets in ms: 1, 5, 10, 50, 100, 500, 1000, 5000, 60000, +inf.
    pub lateness: [AtomicU64; 10],
    /// Sum of lateness, ms.
    pub lateness_sum_ms: AtomicU64,
}

/// Upper bounds (ms) of the lateness buckets.
pub const LATENESS_BUCKETS_MS: [u64; 9] = [1, 5, 10, 50, 100, 500, 1000, 5000, 60_000];

impl Stats {
    fn observe_lateness(&self, ms: u64) {
        let i = LATENESS_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(9);
        self.lateness[i].fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct InFlight {
    cancelled: bool,
}

struct State {
    wheel: Wheel<String>,
    inflight: HashMap<String, InFlight>,
    /// Every `due` key below this cursor is loaded (wheel, in flight or being completed).
    cursor: Vec<u8>,
    /// End of the loader's scan in progress: keys committed meanwhile below it may have been
    /// missed by the scan, so they go straight into the wheel.
    scan_end: Option<Vec<u8>>,
    /// Bumped when the store is reopened: a scan that started before belongs to the old
    /// database and is discarded.
    generation: u64,
}

/// Completions that may wait for the committer at once: about 200 bytes each, and at 10k
/// fires/s enough for 0.8 s of committer pause.
const COMPLETIONS_WAITING: usize = 8192;

struct Inner {
    store: Store,
    committer: Committer,
    cfg: Config,
    sink: Arc<dyn Sink>,
    state: Mutex<State>,
    wake: Notify,
    fire_slots: Arc<Semaphore>,
    /// Completions handed to the committer and not yet stored.
    completion_slots: Arc<Semaphore>,
    stop: AtomicBool,
    stats: Stats,
}

/// Lifecycle of an id, for the status API.
#[derive(Debug, Clone)]
pub struct Status {
    /// The add id this id maps to.
    pub canonical_id: String,
    /// `pending`, `firing`, `retrying`, or the final state, or `unknown`.
    pub state: &'static str,
    /// The pending record.
    pub record: Option<Record>,
    /// The finished entry.
    pub done: Option<DoneEntry>,
    /// Dead letters of this id.
    pub dead: Vec<DeadLetter>,
}

/// The scheduler handle.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent data (every update is one statement).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Scheduler {
    /// Opens the store at `path` and starts loading and firing on the current runtime.
    pub async fn open(
        path: &Path,
        cfg: Config,
        sink: Arc<dyn Sink>,
    ) -> Result<Scheduler, StoreError> {
        let p = path.to_path_buf();
        let (cache, engine) = (cfg.cache_bytes, cfg.engine);
        let store = blocking(move || Store::open_with(&p, cache, engine)).await?;
        Scheduler::start(store, cfg, sink).await
    }

    /// Starts loading and firing over an already open store (a cluster partition's, after its
    /// journal replay).
    pub async fn start(
        store: Store,
        cfg: Config,
        sink: Arc<dyn Sink>,
    ) -> Result<Scheduler, StoreError> {
        let s2 = store.clone();
        let pending = blocking(move || s2.db()?.count_pending()).await?;
        let committer = Committer::start(store.clone(), cfg.max_commit_group, 65_536);
        let inner = Arc::new(Inner {
            store,
            committer,
            fire_slots: Arc::new(Semaphore::new(cfg.fire_concurrency.max(1))),
            completion_slots: Arc::new(Semaphore::new(COMPLETIONS_WAITING)),
            cfg,
            sink,
            state: Mutex::new(State {
                wheel: Wheel::new(chrono_now_ms().max(0) as u64),
                inflight: HashMap::new(),
                cursor: Vec::new(),
                scan_end: None,
                generation: 0,
            }),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        inner.stats.pending.store(pending, Ordering::Relaxed);
        tokio::spawn(drive(inner.clone()));
        tokio::spawn(trim(inner.clone()));
        tokio::spawn(recover(inner.clone()));
        Ok(Scheduler { inner })
    }

    /// Stores a record under its canonical id; true when it is new. Answers after the flush.
    pub async fn add(&self, id: String, record: Record) -> Result<bool, SchedError> {
        self.add_at(id, record, None).await
    }

    /// `add` of a record read from the cluster journal at `offset`, stored with it in one
    /// transaction. `maxPending` does not apply: the client already has its answer.
    pub async fn add_journaled(
        &self,
        id: String,
        record: Record,
        offset: u64,
    ) -> Result<bool, SchedError> {
        self.add_at(id, record, Some(offset)).await
    }

    async fn add_at(
        &self,
        id: String,
        record: Record,
        offset: Option<u64>,
    ) -> Result<bool, SchedError> {
        let inner = &self.inner;
        if inner.stop.load(Ordering::Acquire) {
            return Err(SchedError::Stopped);
        }
        if offset.is_none()
            && inner.cfg.max_pending > 0
            && inner.stats.pending.load(Ordering::Relaxed) >= inner.cfg.max_pending as i64
        {
            return Err(SchedError::Full);
        }
        let m = journaled(
            Mutation::Add {
                id: id.clone(),
                record: Box::new(record),
            },
            offset,
        );
        let applied = inner.committer.commit(m).await?;
        match applied {
            Applied::Added { due_ms } => {
                inner.stats.pending.fetch_add(1, Ordering::Relaxed);
                inner.stats.adds.fetch_add(1, Ordering::Relaxed);
                inner.schedule_if_loaded(due_ms, id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Cancels a canonical id for `topic`. Answers after the flush.
    pub async fn cancel(
        &self,
        id: String,
        topic: String,
        principal: Option<String>,
    ) -> Result<CancelResult, SchedError> {
        self.cancel_at(id, topic, principal, chrono_now_ms(), None)
            .await
    }

    /// `cancel` read from the cluster journal at `offset` (requested at `at_ms`), stored with
    /// the offset in one transaction.
    pub async fn cancel_journaled(
        &self,
        id: String,
        topic: String,
        principal: Option<String>,
        at_ms: i64,
        offset: u64,
    ) -> Result<CancelResult, SchedError> {
        self.cancel_at(id, topic, principal, at_ms, Some(offset))
            .await
    }

    async fn cancel_at(
        &self,
        id: String,
        topic: String,
        principal: Option<String>,
        at_ms: i64,
        offset: Option<u64>,
    ) -> Result<CancelResult, SchedError> {
        let inner = &self.inner;
        let m = journaled(
            Mutation::Cancel {
                id: id.clone(),
                topic,
                at_ms,
                principal,
            },
            offset,
        );
        let applied = inner.committer.commit(m).await?;
        let Applied::Cancel(result) = applied else {
            return Ok(CancelResult::Unknown);
        };
        inner.stats.cancels[result as usize - 1].fetch_add(1, Ordering::Relaxed);
        if result == CancelResult::Cancelled {
            inner.stats.pending.fetch_sub(1, Ordering::Relaxed);
            let mut st = lock(&inner.state);
            st.wheel.remove(&id);
            if let Some(f) = st.inflight.get_mut(&id) {
                // Not yet handed to the writer: the fire task drops it (guarantee 4).
                f.cancelled = true;
            }
        }
        Ok(result)
    }

    /// Status of a canonical id.
    pub async fn status(&self, canonical_id: String) -> Result<Status, StoreError> {
        let inflight = lock(&self.inner.state).inflight.contains_key(&canonical_id);
        let store = self.inner.store.clone();
        let id = canonical_id.clone();
        let (record, done, dead) = blocking(move || {
            let db = store.db()?;
            Ok::<_, StoreError>((db.record(&id)?, db.done(&id)?, db.dead_of(&id)?))
        })
        .await?;
        let state = match (&record, &done) {
            (Some(r), _) if inflight => {
                let _ = r;
                "firing"
            }
            (Some(r), _) if r.attempts > 0 => "retrying",
            (Some(_), _) => "pending",
            (None, Some(d)) => d.state.name(),
            (None, None) => "unknown",
        };
        Ok(Status {
            canonical_id,
            state,
            record,
            done,
            dead,
        })
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(
        &self,
        topic: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let store = self.inner.store.clone();
        blocking(move || store.db()?.dead_letters(topic.as_deref(), limit)).await
    }

    /// Fires a dead letter again now; the outcome code of that fire.
    pub async fn redrive(&self, id: String, k: u64) -> Result<Option<(i32, String)>, StoreError> {
        let store = self.inner.store.clone();
        let Some(d) = blocking(move || store.db()?.take_dead(&id, k)).await? else {
            return Ok(None);
        };
        let msg = fire_message(&d.record, d.k);
        let out = self.inner.sink.fire(msg).await;
        if out.0 != 0 {
            // Keep it dead, with the new outcome.
            let store = self.inner.store.clone();
            let again = DeadLetter {
                code: out.0,
                msg: out.1.clone(),
                dead_ms: chrono_now_ms(),
                ..d
            };
            blocking(move || {
                let db = store.db()?;
                db.put_dead(&again).and_then(|_| db.flush())
            })
            .await?;
        }
        Ok(Some(out))
    }

    /// Deletes a dead letter; true if it existed.
    pub async fn purge(&self, id: String, k: u64) -> Result<bool, StoreError> {
        let store = self.inner.store.clone();
        Ok(blocking(move || store.db()?.take_dead(&id, k))
            .await?
            .is_some())
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Commit counters.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.inner.committer.stats
    }

    /// Records in the wheel and fires in flight.
    pub fn loaded_and_inflight(&self) -> (usize, usize) {
        let st = lock(&self.inner.state);
        (st.wheel.len(), st.inflight.len())
    }

    /// Number of dead letters.
    pub fn dead_count(&self) -> usize {
        self.inner.store.dead_count()
    }

    /// True from an I/O error of the store until it has been reopened (adds and cancels fail,
    /// nothing fires).
    pub fn store_failed(&self) -> bool {
        self.inner.store.is_failed()
    }

    /// Times the store was reopened after an I/O error.
    pub fn store_reopens(&self) -> u64 {
        self.inner.store.reopens()
    }

    /// Stops handing out fires, waits for those in flight (bounded), flushes.
    pub async fn shutdown(&self, bound: Duration) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let until = tokio::time::Instant::now() + bound;
        while !lock(&self.inner.state).inflight.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = lock(&self.inner.state).inflight.len();
        let store = self.inner.store.clone();
        let _ = blocking(move || {
            // Occurrences still in flight fire again after the restart (at least once).
            let db = store.db()?;
            db.set_meta("clean_shutdown", &[u8::from(left == 0)])?;
            db.flush()
        })
        .await;
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "scheduler stopped with fires in flight; they fire again after restart"
            );
        }
    }
}

impl Inner {
    /// Puts a just-committed due time into the wheel when the loader has passed it.
    fn schedule_if_loaded(&self, due_ms: i64, id: String) {
        let key = due_key(due_ms, &id);
        let mut st = lock(&self.state);
        let covered = key < st.cursor || st.scan_end.as_ref().is_some_and(|end| key < *end);
        if !covered || st.inflight.contains_key(&id) {
            return;
        }
        if st.wheel.len() >= self.cfg.max_loaded {
            // Full: evict the latest entry (it stays in the store) and move the cursor back to it.
            match st.wheel.pop_latest() {
                Some((d, evicted)) if (d as i64, &evicted) > (due_ms, &id) => {
                    st.cursor = st.cursor.clone().min(due_key(d as i64, &evicted));
                }
                Some((d, evicted)) => {
                    st.wheel.insert(d, evicted);
                    // Never raise the cursor: a key covered only by a scan in progress lies at
                    // or above it, and raising it would skip what the scan has not loaded.
                    if key < st.cursor {
                        st.cursor = key;
                    }
                    return;
                }
                None => {}
            }
        }
        st.wheel.insert(due_ms.max(0) as u64, id);
        drop(st);
        self.wake.notify_one();
    }

    fn retry_at(&self, rec: &Record, k: u64, now: i64) -> Option<i64> {
        let occurrence_due = rec.due_ms(k);
        if now - occurrence_due > self.cfg.fire_retry_budget_sec.saturating_mul(1000) {
            return None;
        }
        let exp = rec.attempts.min(30);
        let backoff = self
            .cfg
            .fire_retry_initial_ms
            .saturating_mul(1i64 << exp)
            .min(self.cfg.fire_retry_max_ms);
        Some(now + backoff.max(1))
    }
}

/// Loads `due` entries up to `now + nearWindowMs` into the wheel.
async fn load(inner: &Arc<Inner>, now: i64) {
    let horizon = now
        .saturating_add(inner.cfg.near_window_ms)
        .min(now + MAX_SPAN as i64 - 1);
    loop {
        let end = due_key(horizon, "");
        let (from, room, generation) = {
            let mut st = lock(&inner.state);
            let room = inner.cfg.max_loaded.saturating_sub(st.wheel.len());
            if room == 0 || st.cursor >= end {
                return;
            }
            st.scan_end = Some(end.clone());
            (
                st.cursor.clone(),
                room.min(inner.cfg.fire_batch_size.max(1) * 4),
                st.generation,
            )
        };
        let store = inner.store.clone();
        let (from2, end2) = (from.clone(), end.clone());
        let batch = blocking(move || store.db()?.due_after(&from2, &end2, room)).await;
        let mut st = lock(&inner.state);
        st.scan_end = None;
        let Ok(batch) = batch else {
            tracing::warn!("delay loader: storage read failed");
            return;
        };
        if st.cursor != from || st.generation != generation {
            continue; // an eviction moved the cursor, or the store was reopened: rescan
        }
        for (due, id) in &batch {
            if st.inflight.contains_key(id) {
                continue;
            }
            // Adds committed during the scan may have filled the room measured before it: stop
            // at the first entry that no longer fits; the cursor stays there.
            if st.wheel.len() >= inner.cfg.max_loaded && !st.wheel.contains(id) {
                st.cursor = due_key(*due, id);
                return;
            }
            st.wheel.insert((*due).max(0) as u64, id.clone());
        }
        if batch.len() < room {
            st.cursor = due_key(horizon, "");
            return;
        }
        if let Some((due, id)) = batch.last() {
            let mut next = due_key(*due, id);
            next.push(0);
            st.cursor = next;
        }
    }
}

async fn drive(inner: Arc<Inner>) {
    // Fire pacing: each hand-out takes the next slot of a fixed cadence (no burst beyond it).
    let pace = (inner.cfg.fire_max_tps > 0)
        .then(|| Duration::from_nanos(1_000_000_000 / inner.cfg.fire_max_tps.max(1)));
    let mut next_slot = tokio::time::Instant::now();
    while !inner.stop.load(Ordering::Acquire) {
        if inner.store.is_failed() {
            // Completions cannot be stored: firing now would repeat every occurrence until the
            // store is back. `recover` reloads the wheel from the reopened store.
            tokio::time::sleep(STORE_FAILED_POLL).await;
            continue;
        }
        let now = chrono_now_ms();
        load(&inner, now).await;
        let expired = {
            let mut st = lock(&inner.state);
            let due = st.wheel.poll(now.max(0) as u64);
            let mut out = Vec::with_capacity(due.len());
            for (d, id) in due {
                if !st.inflight.contains_key(&id) {
                    st.inflight.insert(id.clone(), InFlight::default());
                    out.push((d as i64, id));
                }
            }
            out
        };
        for chunk in expired.chunks(inner.cfg.fire_batch_size.max(1)) {
            // One blocking read for the whole batch instead of one per record.
            let store = inner.store.clone();
            let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
            let records = blocking(move || {
                let db = store.db();
                ids.iter()
                    .map(|id| match &db {
                        Ok(db) => db.record(id),
                        Err(_) => Err(StoreError::Unavailable),
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            for ((due, id), rec) in chunk.iter().cloned().zip(records) {
                if let Some(step) = pace {
                    let now = tokio::time::Instant::now();
                    next_slot = next_slot.max(now - step);
                    if next_slot > now {
                        tokio::time::sleep_until(next_slot).await;
                    }
                    next_slot += step;
                }
                let Ok(permit) = inner.fire_slots.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(fire_one(inner.clone(), due, id, rec, permit));
            }
        }
        let next = lock(&inner.state).wheel.next_expiration();
        let now = chrono_now_ms();
        let period = inner.cfg.near_window_ms.clamp(10, 1000);
        let wait_ms = match next {
            Some(n) => (n as i64 - now).clamp(0, period),
            None => period,
        };
        if wait_ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = inner.wake.notified() => {}
            }
        }
    }
}

/// Wraps `m` with its journal offset, when it came from the cluster journal.
fn journaled(m: Mutation, offset: Option<u64>) -> Mutation {
    match offset {
        Some(offset) => Mutation::Journaled {
            offset,
            inner: Box::new(m),
        },
        None => m,
    }
}

fn fire_message(rec: &Record, k: u64) -> FireMessage {
    FireMessage {
        topic: rec.topic.clone(),
        key: rec.occurrence_id(k),
        body: rec.body.clone(),
        tags: rec.tags.clone(),
        properties: rec.properties.clone(),
        due_ms: rec.due_ms(k),
        id: rec.id.to_string(),
        index: k,
    }
}

async fn fire_one(
    inner: Arc<Inner>,
    due: i64,
    id: String,
    rec: Result<Option<Record>, StoreError>,
    permit: OwnedSemaphorePermit,
) {
    let rec = match rec {
        Ok(Some(r)) if r.next_due_ms == due => r,
        Ok(Some(r)) => {
            // The entry moved (a retry or a later occurrence): schedule its current time.
            lock(&inner.state).inflight.remove(&id);
            inner.schedule_if_loaded(r.next_due_ms, id);
            return;
        }
        Ok(None) => {
            lock(&inner.state).inflight.remove(&id);
            return;
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "delay fire: storage read failed");
            lock(&inner.state).inflight.remove(&id);
            inner.schedule_if_loaded(due + 1000, id);
            return;
        }
    };
    // Never early: the wall clock may have moved back since the wheel expired.
    loop {
        let now = chrono_now_ms();
        if now >= due {
            break;
        }
        tokio::time::sleep(Duration::from_millis((due - now) as u64)).await;
    }
    {
        let mut st = lock(&inner.state);
        if st.inflight.get(&id).is_some_and(|f| f.cancelled) {
            st.inflight.remove(&id);
            return;
        }
    }
    let k = rec.next_index;
    let handed = chrono_now_ms();
    inner.stats.observe_lateness((handed - due).max(0) as u64);
    let (code, msg) = inner.sink.fire(fire_message(&rec, k)).await;
    let now = chrono_now_ms();
    let end = if code == 0 {
        inner.stats.fired[0].fetch_add(1, Ordering::Relaxed);
        FireEnd::Ok
    } else if is_permanent(code) {
        inner.stats.fired[2].fetch_add(1, Ordering::Relaxed);
        FireEnd::Dead { code, msg }
    } else {
        match inner.retry_at(&rec, k, now) {
            Some(at_ms) => {
                inner.stats.fired[1].fetch_add(1, Ordering::Relaxed);
                FireEnd::Retry { at_ms }
            }
            None => {
                inner.stats.fired[2].fetch_add(1, Ordering::Relaxed);
                FireEnd::Dead { code, msg }
            }
        }
    };
    let m = Mutation::Complete {
        id: id.clone(),
        k,
        end,
        now_ms: now,
        catch_up: inner.cfg.catch_up,
    };
    // The fire slot is given back once the sink answered, so a committer pause (a store
    // checkpoint: 20-35 ms, docs/DECISIONS.md) does not stop the next fires; completions
    // waiting for the committer have their own bound (RAM bounded, delay.md §6.8). The
    // record (and its body) is not kept while waiting.
    drop(rec);
    let Ok(waiting) = inner.completion_slots.clone().acquire_owned().await else {
        return;
    };
    drop(permit);
    let reply = inner.committer.submit(m).await.await;
    drop(waiting);
    lock(&inner.state).inflight.remove(&id);
    match reply {
        Ok(Ok(Applied::Rescheduled {
            due_ms, skipped, ..
        })) => {
            inner.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
            inner.schedule_if_loaded(due_ms, id);
        }
        Ok(Ok(Applied::Finished(_))) => {
            inner.stats.pending.fetch_sub(1, Ordering::Relaxed);
            inner.sink.finished(&id);
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            // The due entry is still in the store: the occurrence fires again (at least once).
            // After an I/O error firing pauses until the store is reopened (`recover`).
            tracing::warn!(%id, error = %e, "delay completion not stored");
            inner.schedule_if_loaded(due, id);
        }
        Err(_) => {}
    }
}

/// How often `drive` looks again while the store is failed.
const STORE_FAILED_POLL: Duration = Duration::from_millis(100);
/// First wait before reopening a failed store, and the bound of its doubling.
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(5);
/// How long a reopen waits for operations still using the old database.
const REOPEN_RELEASE: Duration = Duration::from_secs(5);

/// Reopens the store after an I/O error of the data directory (disk full, read-only or failing
/// filesystem). sled 0.34 fails every write after its first I/O error until the database is
/// opened again, so a full disk would otherwise answer 10 forever after space returns. While
/// the store is failed, adds and cancels answer 10 (`StoreError`) and nothing fires; after a
/// successful reopen the wheel is reloaded from the store (completions applied but never made
/// durable are undone by the reopen, so those occurrences fire again: at least once).
async fn recover(inner: Arc<Inner>) {
    let mut wait = REOPEN_FIRST;
    while !inner.stop.load(Ordering::Acquire) {
        if !inner.store.is_failed() {
            wait = REOPEN_FIRST;
            tokio::time::sleep(STORE_FAILED_POLL).await;
            continue;
        }
        tokio::time::sleep(wait).await;
        let store = inner.store.clone();
        let reopened = tokio::task::spawn_blocking(move || {
            store.reopen(REOPEN_RELEASE)?;
            Ok::<_, StoreError>(store.db().and_then(|db| db.count_pending()))
        })
        .await;
        match reopened {
            Ok(Ok(pending)) => {
                // The reopened store is the truth: what the wheel holds may describe writes
                // that never became durable.
                {
                    let mut st = lock(&inner.state);
                    st.wheel = Wheel::new(chrono_now_ms().max(0) as u64);
                    st.cursor = Vec::new();
                    st.generation += 1;
                }
                inner.wake.notify_one();
                match pending {
                    Ok(n) => inner.stats.pending.store(n, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "delay store: pending count not read"),
                }
                tracing::info!(
                    reopens = inner.store.reopens(),
                    "delay store reopened; adds, cancels and firing resume"
                );
                wait = REOPEN_FIRST;
            }
            Ok(Err(e)) => {
                wait = (wait * 2).min(REOPEN_MAX);
                tracing::warn!(
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "delay store: reopen failed"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "delay store: reopen panicked");
                wait = REOPEN_MAX;
            }
        }
    }
}

async fn trim(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        let now = chrono_now_ms();
        let m = Mutation::Trim {
            before_ms: now - inner.cfg.done_retention_sec.saturating_mul(1000),
            dead_before_ms: now - inner.cfg.dead_retention_sec.saturating_mul(1000),
            limit: 10_000,
        };
        let _ = inner.committer.commit(m).await;
    }
}
