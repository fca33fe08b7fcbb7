//! The scheduler's facade: open or start, add, cancel, status, dead letters, shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::commit::{CommitStats, Committer};
use crate::config::Config;
use crate::error::{SchedError, StoreError};
use crate::fire::{self, fire_message};
use crate::inner::{blocking, Inner};
use crate::journal::JournalStore;
use crate::membership::{lock, State};
use crate::record::Record;
use crate::scope::TaskScope;
use crate::sink::{Outcome, Sink};
use crate::stats::Stats;
use crate::store::{Applied, CancelResult, DeadLetter, DoneEntry, Mutation, Store};
use crate::upkeep::{self, stuck_ms, STUCK_POLL};

/// Completions that may wait for the committer at once: about 200 bytes each, and at 10k
/// fires/s enough for 0.8 s of committer pause.
const COMPLETIONS_WAITING: usize = 8192;

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

impl Scheduler {
    /// Opens the store at `path` and starts loading and firing on the current runtime, with
    /// tasks of its own.
    pub async fn open(
        path: &Path,
        cfg: Config,
        sink: Arc<dyn Sink>,
    ) -> Result<Scheduler, StoreError> {
        Scheduler::open_in(path, cfg, sink, TaskScope::default()).await
    }

    /// `open`, with every task spawned on `scope`'s tracker and stopped by its token.
    pub async fn open_in(
        path: &Path,
        cfg: Config,
        sink: Arc<dyn Sink>,
        scope: TaskScope,
    ) -> Result<Scheduler, StoreError> {
        let p = path.to_path_buf();
        let (cache, engine) = (cfg.cache_bytes, cfg.engine);
        let store = blocking(move || Store::open_with(&p, cache, engine)).await?;
        Scheduler::start_on(store, cfg, sink, scope).await
    }

    /// Starts loading and firing over a store brought up to date from its journal (a cluster
    /// partition's, after the replay), with every task spawned on `scope`'s tracker and stopped
    /// by its token (cancelled by [`Scheduler::shutdown`] too).
    pub async fn start(
        store: JournalStore,
        cfg: Config,
        sink: Arc<dyn Sink>,
        scope: TaskScope,
    ) -> Result<Scheduler, StoreError> {
        Scheduler::start_on(store.into_store(), cfg, sink, scope).await
    }

    async fn start_on(
        store: Store,
        cfg: Config,
        sink: Arc<dyn Sink>,
        scope: TaskScope,
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
            state: Mutex::new(State::new(now_ms())),
            wake: Notify::new(),
            stop: scope.stop,
            tasks: scope.tracker,
            fires: TaskTracker::new(),
            stats: Stats::default(),
        });
        inner.stats.pending.store(pending, Ordering::Relaxed);
        upkeep::refresh_dead_count(&inner).await;
        inner.tasks.spawn(fire::drive(inner.clone()));
        inner.tasks.spawn(upkeep::trim(inner.clone()));
        inner.tasks.spawn(upkeep::recover(inner.clone()));
        inner.tasks.spawn(upkeep::watch_stuck(inner.clone()));
        inner.tasks.spawn(upkeep::count_dead(inner.clone()));
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
        if inner.stop.is_cancelled() {
            return Err(SchedError::Stopped);
        }
        self.refuse_if_stuck(offset)?;
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
        let inner = inner.clone();
        let work = async move {
            match inner.committer.commit(m).await? {
                Applied::Added { due_ms } => {
                    inner.stats.pending.fetch_add(1, Ordering::Relaxed);
                    inner.stats.adds.fetch_add(1, Ordering::Relaxed);
                    inner.schedule_if_loaded(due_ms, id);
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        self.answer(work, offset.is_none()).await
    }

    /// Cancels a canonical id for `topic`. Answers after the flush.
    pub async fn cancel(
        &self,
        id: String,
        topic: String,
        principal: Option<String>,
    ) -> Result<CancelResult, SchedError> {
        self.cancel_at(id, topic, principal, now_ms(), None).await
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
        self.refuse_if_stuck(offset)?;
        let m = journaled(
            Mutation::Cancel {
                id: id.clone(),
                topic,
                at_ms,
                principal,
            },
            offset,
        );
        let inner = inner.clone();
        let work = async move {
            let Applied::Cancel(result) = inner.committer.commit(m).await? else {
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
        };
        self.answer(work, offset.is_none()).await
    }

    /// A client waits for the answer of a mutation without a journal `offset`: refuse it at once
    /// rather than queue it behind a commit that does not return. Journaled mutations (already
    /// answered) queue and apply once it does.
    fn refuse_if_stuck(&self, offset: Option<u64>) -> Result<(), SchedError> {
        match (offset, self.store_stuck_ms()) {
            (None, Some(ms)) => Err(SchedError::Stuck(ms)),
            _ => Ok(()),
        }
    }

    /// Awaits `work` (a commit and what follows it). With `refuse_when_stuck` (a client waits
    /// for the answer), a store that gets stuck meanwhile answers `Stuck` at once, and `work`
    /// finishes as a task of the scheduler once the commit returns, so an add that lands after
    /// all is still counted and scheduled.
    async fn answer<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, SchedError>> + Send + 'static,
        refuse_when_stuck: bool,
    ) -> Result<T, SchedError> {
        if !refuse_when_stuck || self.inner.cfg.stuck_after_ms <= 0 {
            return work.await;
        }
        let mut work = Box::pin(work);
        loop {
            match tokio::time::timeout(STUCK_POLL, &mut work).await {
                Ok(r) => return r,
                Err(_) => {
                    if let Some(ms) = self.store_stuck_ms() {
                        self.inner.tasks.spawn(async move {
                            let _ = work.await;
                        });
                        return Err(SchedError::Stuck(ms));
                    }
                }
            }
        }
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

    /// Fires a dead letter again now; how that fire ended. A failed one stays dead, with the
    /// new reason.
    pub async fn redrive(&self, id: String, k: u64) -> Result<Option<Outcome>, StoreError> {
        let store = self.inner.store.clone();
        let Some(d) = blocking(move || store.db()?.take_dead(&id, k)).await? else {
            return Ok(None);
        };
        let msg = fire_message(&d.record, d.k);
        let out = self.inner.sink.fire(msg).await;
        if let Outcome::Retry { reason } | Outcome::Permanent { reason } = &out {
            let store = self.inner.store.clone();
            let again = DeadLetter {
                code: reason.code,
                msg: reason.message.clone(),
                dead_ms: now_ms(),
                ..d
            };
            blocking(move || {
                let db = store.db()?;
                db.put_dead(&again).and_then(|_| db.flush())
            })
            .await?;
        }
        upkeep::refresh_dead_count(&self.inner).await;
        Ok(Some(out))
    }

    /// Deletes a dead letter; true if it existed.
    pub async fn purge(&self, id: String, k: u64) -> Result<bool, StoreError> {
        let store = self.inner.store.clone();
        let purged = blocking(move || store.db()?.take_dead(&id, k))
            .await?
            .is_some();
        upkeep::refresh_dead_count(&self.inner).await;
        Ok(purged)
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

    /// Number of dead letters, as counted at most `DEAD_COUNT_POLL` ago: never waits for the
    /// store (metrics and status are served from runtime threads).
    pub fn dead_count(&self) -> usize {
        self.inner.stats.dead_letters.load(Ordering::Relaxed) as usize
    }

    /// True from an I/O error of the store until it has been reopened (adds and cancels fail,
    /// nothing fires).
    pub fn store_failed(&self) -> bool {
        self.inner.store.is_failed()
    }

    /// How long the commit group in flight has been running, ms, once that is longer than
    /// `stuck_after_ms` (the store is stuck: adds and cancels are refused); else `None`.
    pub fn store_stuck_ms(&self) -> Option<i64> {
        stuck_ms(&self.inner.committer.stats, self.inner.cfg.stuck_after_ms)
    }

    /// Times the store was reopened after an I/O error.
    pub fn store_reopens(&self) -> u64 {
        self.inner.store.reopens()
    }

    /// Stops handing out fires, waits for the fire tasks in flight (bounded), flushes.
    pub async fn shutdown(&self, bound: Duration) {
        self.inner.stop.cancel();
        self.inner.fires.close();
        let _ = tokio::time::timeout(bound, self.inner.fires.wait()).await;
        // Occurrences taken from the wheel whose fire task never ran count as in flight too.
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

/// Wraps `m` with its journal offset, when it came from the cluster journal.
pub(crate) fn journaled(m: Mutation, offset: Option<u64>) -> Mutation {
    match offset {
        Some(offset) => Mutation::Journaled {
            offset,
            inner: Box::new(m),
        },
        None => m,
    }
}
