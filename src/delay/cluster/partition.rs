//! One owned journal partition: a task that claims it, replays the journal into the
//! partition's store, then runs a scheduler over it and applies live records until the
//! partition is lost (delay.md §10).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use scheduler::{FireMessage, JournalEntry, JournalStore, Outcome, Sink, TaskScope};

use super::journal::Entry;
use super::{Cluster, ClusterError, Owned};
use crate::delay::sink::{outcome, WriterSink};
use crate::lifecycle::Tasks;
use crate::proto::Code;

/// How long a revoked partition may take to stop firing before the rebalance goes on.
pub(crate) const STOP_BOUND: Duration = Duration::from_secs(5);
/// Journal records applied per replay transaction, and per live step.
const APPLY_BATCH: usize = 512;

/// Stops firing partition `o` at once and shuts its scheduler down (bounded).
pub async fn stop_partition(o: &Owned, bound: Duration) {
    o.lost.cancel();
    o.active.store(false, Ordering::Release);
    let engine = o.engine.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(e) = engine {
        e.shutdown(bound).await;
    }
}

/// Stops partition `o` and waits for its tasks (its owner task and its scheduler's) to end;
/// `bound` for both together.
pub async fn release(o: &Owned, bound: Duration) {
    let until = tokio::time::Instant::now() + bound;
    stop_partition(o, bound).await;
    o.tasks.close();
    let ended = tokio::time::timeout_at(until, o.tasks.wait()).await.is_ok();
    if !ended && !bound.is_zero() {
        tracing::warn!(
            partition = o.partition,
            running = o.tasks.len(),
            "delay cluster: partition tasks still running after the stop bound"
        );
    }
}

/// Owns partition `o` until it is lost; a failure restarts from the stored offset.
pub(crate) async fn run_partition(cluster: Arc<Cluster>, o: Arc<Owned>) {
    while !o.lost.is_cancelled() {
        match own(&cluster, &o).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(partition = o.partition, error = %e, "delay cluster: partition restarts");
                o.active.store(false, Ordering::Release);
                let engine = o.engine.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(e) = engine {
                    e.shutdown(STOP_BOUND).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = o.lost.cancelled() => {}
                }
            }
        }
    }
    stop_partition(&o, STOP_BOUND).await;
}

/// A partition store last applied longer ago than this is rebuilt from the journal: the
/// tombstones that end finished and cancelled ids are kept 24 h by the broker
/// (`delete.retention.ms`), so an older checkpoint might miss one and fire a cancelled id.
const CHECKPOINT_MAX_AGE: Duration = Duration::from_secs(20 * 3600);
/// File in a partition store whose modification time is the last time this node applied to it.
const APPLIED_MARK: &str = "applied.mark";

fn store_dir(cluster: &Cluster, p: i32) -> std::path::PathBuf {
    cluster.data_dir.join(&cluster.topic).join(format!("p{p}"))
}

/// Records that partition `p`'s store is current now.
fn mark_applied(cluster: &Cluster, p: i32) {
    let _ = std::fs::write(store_dir(cluster, p).join(APPLIED_MARK), b"");
}

fn open_store(
    cluster: &Cluster,
    p: i32,
    cache_bytes: u64,
    engine: scheduler::EngineKind,
) -> Result<JournalStore, ClusterError> {
    let mut stores = cluster.stores.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = stores.get(&p) {
        return Ok(s.clone());
    }
    let dir = store_dir(cluster, p);
    let age = std::fs::metadata(dir.join(APPLIED_MARK))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if dir.exists() && age.is_none_or(|a| a > CHECKPOINT_MAX_AGE) {
        tracing::warn!(
            partition = p,
            "delay cluster: partition store too old or unmarked, rebuilt from the journal"
        );
        std::fs::remove_dir_all(&dir).map_err(|e| ClusterError::Store(e.to_string()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| ClusterError::Store(e.to_string()))?;
    let s = JournalStore::open(&dir, cache_bytes, engine)
        .map_err(|e| ClusterError::Store(e.to_string()))?;
    stores.insert(p, s.clone());
    Ok(s)
}

fn reader(cluster: &Cluster, p: i32, from: Option<u64>) -> Result<StreamConsumer, ClusterError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.bootstrap);
    for (k, v) in &cluster.overrides {
        c.set(k, v);
    }
    // Assigned by hand: the group id is never joined and no offset is committed; the store
    // holds the position.
    c.set("group.id", format!("{}-reader", cluster.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "50")
        // Only for a start offset out of range (records deleted below it): read from the
        // earliest one kept rather than skip to the end.
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = c.create()?;
    let mut tpl = TopicPartitionList::new();
    // A concrete offset, never `Offset::Beginning`: a logical offset makes a fresh consumer
    // query it, and librdkafka retries that query 500 ms later when the partition's leader
    // becomes known meanwhile, which it always does on a new client: a 500 ms replay floor.
    // Compaction leaves a partition's log start where it is, so offset 0 is the beginning.
    let offset = Offset::Offset(from.map_or(0, |o| o as i64 + 1));
    tpl.add_partition_offset(&cluster.topic, p, offset)?;
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// What a journal record does to the store during replay (before this node fires).
fn replay_entry(e: Entry) -> Option<JournalEntry> {
    Some(match e {
        Entry::Add { id, record } => JournalEntry::Add { id, record },
        Entry::Cancel {
            id,
            topic,
            at_ms,
            principal,
        } => JournalEntry::Cancel {
            id,
            topic,
            at_ms,
            principal,
        },
        // A previous owner finished this occurrence: do not fire it again.
        // The completion time is the firing owner's, so the loop's next occurrence and any
        // catch-up skip come out as they did there.
        Entry::Fired {
            id, k, dead, at_ms, ..
        } => JournalEntry::Fired { id, k, dead, at_ms },
        Entry::Claim { .. } => return None,
    })
}

async fn apply_replay(
    tasks: &Tasks,
    store: &JournalStore,
    batch: &mut Vec<(u64, JournalEntry)>,
    catch_up: scheduler::CatchUp,
) -> Result<(), ClusterError> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries = std::mem::take(batch);
    let s = store.clone();
    tasks
        .spawn_blocking(move || s.replay(entries, catch_up))
        .await
        .map_err(|e| ClusterError::Store(e.to_string()))?
        .map_err(|e| ClusterError::Store(e.to_string()))
}

/// Claims partition `o`, replays the journal up to the claim, then fires and applies live
/// records until the partition is lost. `Ok` when lost, `Err` to start over.
async fn own(cluster: &Arc<Cluster>, o: &Arc<Owned>) -> Result<(), ClusterError> {
    let p = o.partition;
    let settings = cluster.sink.live.settings_full();
    let mut cfg = settings.scheduler.to_config();
    // The cache is shared out over the partitions a node may come to own.
    cfg.cache_bytes = (cfg.cache_bytes / cluster.partitions.max(1) as u64).max(8 << 20);
    let catch_up = cfg.catch_up;
    let claim = Entry::Claim {
        node: cluster.node.clone(),
        admin: cluster.admin.clone(),
    };
    // The claim's offset is the epoch: larger than any earlier owner's, and every record
    // before it belongs to the history this node replays. The claim and opening the store
    // (with the reader, which connects meanwhile) do not depend on each other: a takeover
    // waits for the slower of the two, not for both in turn (docs/CLUSTER.md).
    let t0 = Instant::now();
    let claimed = async {
        loop {
            tokio::select! {
                r = cluster.append(p, &claim) => match r {
                    Ok(off) => return Some((off, t0.elapsed().as_millis() as u64)),
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "delay cluster: claim failed");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = o.lost.cancelled() => return None,
                        }
                    }
                },
                _ = o.lost.cancelled() => return None,
            }
        }
    };
    let (cache, engine) = (cfg.cache_bytes, cfg.engine);
    let opened = async {
        let c2 = cluster.clone();
        let store = cluster
            .tasks
            .spawn_blocking(move || open_store(&c2, p, cache, engine))
            .await
            .map_err(|e| ClusterError::Store(e.to_string()))??;
        let from = store
            .offset()
            .map_err(|e| ClusterError::Store(e.to_string()))?;
        let reader = reader(cluster, p, from)?;
        Ok::<_, ClusterError>((store, from, reader, t0.elapsed().as_millis() as u64))
    };
    let (claimed, opened) = tokio::join!(claimed, opened);
    let Some((epoch, claim_ms)) = claimed else {
        return Ok(());
    };
    o.epoch.store(epoch, Ordering::Release);
    let (store, from, reader, open_ms) = opened?;
    let started = Instant::now();
    let mut replayed = 0u64;
    let mut batch: Vec<(u64, JournalEntry)> = Vec::new();
    if from.is_none_or(|f| (f as i64) < epoch - 1) {
        loop {
            let msg = tokio::select! {
                m = reader.recv() => m?,
                _ = o.lost.cancelled() => return Ok(()),
            };
            let off = msg.offset();
            if off >= epoch {
                break;
            }
            let now = chrono::Utc::now().timestamp_millis();
            let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
            if let (None, Some(id)) = (msg.payload(), key.filter(|k| !k.contains('#'))) {
                // A tombstone: the id finished on an earlier owner; its add and fired marker
                // may already be compacted away, so drop whatever this store still holds.
                batch.push((
                    off as u64,
                    JournalEntry::Forget {
                        id: id.to_string(),
                        at_ms: now,
                    },
                ));
            } else if let Some(entry) = msg.payload().and_then(|v| Entry::decode(v).ok()) {
                if let Some(e) = replay_entry(entry) {
                    batch.push((off as u64, e));
                    replayed += 1;
                }
            }
            if batch.len() >= APPLY_BATCH || off + 1 >= epoch {
                apply_replay(&cluster.tasks, &store, &mut batch, catch_up).await?;
            }
            if off + 1 >= epoch {
                break;
            }
        }
        apply_replay(&cluster.tasks, &store, &mut batch, catch_up).await?;
    }
    o.replay_ms
        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    if o.lost.is_cancelled() {
        return Ok(());
    }
    let sink = Arc::new(ClusterSink {
        writer: WriterSink {
            timeout: settings.scheduler.fire_timeout_ms,
            ..cluster.sink.clone()
        },
        cluster: Arc::downgrade(cluster),
        owned: o.clone(),
    });
    let c2 = cluster.clone();
    let _ = cluster
        .tasks
        .spawn_blocking(move || mark_applied(&c2, p))
        .await;
    // The scheduler's tasks are the partition's; a loss stops them, and so does a restart
    // (which shuts this scheduler down, cancelling its own token only).
    let scope = TaskScope {
        tracker: o.tasks.clone(),
        stop: o.lost.child_token(),
    };
    let engine = scheduler::Scheduler::start(store, cfg, sink, scope)
        .await
        .map_err(|e| ClusterError::Store(e.to_string()))?;
    *o.engine.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.clone());
    o.active.store(true, Ordering::Release);
    // Everything before the claim is in the store the scheduler fires from.
    o.applied.send_if_modified(|a| raise(a, epoch));
    cluster.stats.applied.fetch_add(replayed, Ordering::Relaxed);
    tracing::info!(
        partition = p,
        epoch,
        replayed,
        replay_ms = started.elapsed().as_millis() as u64,
        claim_ms,
        open_ms,
        since_assign_ms = o.since.elapsed().as_millis() as u64,
        "delay cluster: partition active"
    );
    live(cluster, o, &engine, &reader, epoch).await
}

/// One journal record being applied by a partition's scheduler.
type ApplyOp<'a> = Pin<Box<dyn Future<Output = Result<(), scheduler::SchedError>> + Send + 'a>>;

/// Applies journal records that arrive after the claim, in order, until the partition is lost.
async fn live(
    cluster: &Arc<Cluster>,
    o: &Arc<Owned>,
    engine: &scheduler::Scheduler,
    reader: &StreamConsumer,
    epoch: i64,
) -> Result<(), ClusterError> {
    let mut marked = Instant::now();
    let cancel_lag = test_cancel_apply_delay();
    loop {
        if marked.elapsed() > Duration::from_secs(60) {
            marked = Instant::now();
            let (c, p) = (cluster.clone(), o.partition);
            let _ = cluster
                .tasks
                .spawn_blocking(move || mark_applied(&c, p))
                .await;
        }
        let first = tokio::select! {
            m = reader.recv() => m?,
            _ = o.lost.cancelled() => return Ok(()),
        };
        let mut msgs = vec![(first.offset(), first.payload().map(<[u8]>::to_vec))];
        while msgs.len() < APPLY_BATCH {
            match reader.recv().now_or_never() {
                Some(Ok(m)) => msgs.push((m.offset(), m.payload().map(<[u8]>::to_vec))),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        let last = msgs.last().map_or(-1, |(off, _)| *off);
        if let Some(lag) = cancel_lag {
            let has_cancel = msgs.iter().any(|(_, v)| {
                v.as_deref()
                    .and_then(|v| Entry::decode(v).ok())
                    .is_some_and(|e| matches!(e, Entry::Cancel { .. }))
            });
            if has_cancel {
                tokio::select! {
                    _ = tokio::time::sleep(lag) => {}
                    _ = o.lost.cancelled() => return Ok(()),
                }
            }
        }
        // Futures created in journal order reach the committer's queue in that order
        // (join_all polls them first in order; the queue's senders wait FIFO), so an add is
        // applied before its cancel.
        let mut ops: Vec<ApplyOp<'_>> = Vec::with_capacity(msgs.len());
        for (off, payload) in msgs {
            let Some(entry) = payload.as_deref().and_then(|v| Entry::decode(v).ok()) else {
                continue;
            };
            let off_u = off as u64;
            match entry {
                Entry::Add { id, record } => {
                    ops.push(Box::pin(
                        engine
                            .add_journaled(id, *record, off_u)
                            .map(|r| r.map(|_| ())),
                    ));
                }
                Entry::Cancel {
                    id,
                    topic,
                    at_ms,
                    principal,
                } => {
                    let (c, p) = (cluster.clone(), o.partition);
                    ops.push(Box::pin(
                        engine
                            .cancel_journaled(id.clone(), topic, principal, at_ms, off_u)
                            .map(move |r| {
                                if matches!(r, Ok(scheduler::CancelResult::Cancelled)) {
                                    c.forget(p, &id);
                                }
                                r.map(|_| ())
                            }),
                    ));
                }
                Entry::Fired { epoch: e, .. } if e != epoch => {
                    // A previous owner still fired after this node's claim (it had not yet
                    // noticed the move); counted so operators see overlap.
                    cluster.stats.foreign_fired.fetch_add(1, Ordering::Relaxed);
                }
                Entry::Fired { .. } => {}
                Entry::Claim { node, .. } if off > epoch => {
                    tracing::warn!(partition = o.partition, by = %node, "delay cluster: partition claimed by another node");
                    stop_partition(o, STOP_BOUND).await;
                    return Ok(());
                }
                Entry::Claim { .. } => {}
            }
        }
        let n = ops.len() as u64;
        for r in futures::future::join_all(ops).await {
            // The record is acknowledged to a client: start over from the stored offset
            // rather than skip it.
            r.map_err(|e| ClusterError::Store(e.to_string()))?;
        }
        cluster.stats.applied.fetch_add(n, Ordering::Relaxed);
        // Every record through `last` is stored: cancels waiting on it may be answered.
        o.applied.send_if_modified(|a| raise(a, last));
    }
}

/// Raises the applied-through offset `a` to `to`; whether it moved.
fn raise(a: &mut i64, to: i64) -> bool {
    let moved = to > *a;
    if moved {
        *a = to;
    }
    moved
}

/// Test-only: `PPROXY_TEST_CANCEL_APPLY_DELAY_MS` delays every live batch that holds a cancel
/// by that long before it is applied, so tests/stack/cluster_cancel.rs can make an owner that
/// applies cancels late (a loaded node) at will. Unset in production.
fn test_cancel_apply_delay() -> Option<Duration> {
    let ms: u64 = std::env::var("PPROXY_TEST_CANCEL_APPLY_DELAY_MS")
        .ok()?
        .parse()
        .ok()?;
    tracing::warn!(
        ms,
        "PPROXY_TEST_CANCEL_APPLY_DELAY_MS set: journaled cancels are applied late (tests only)"
    );
    Some(Duration::from_millis(ms))
}

/// The sink of a partition's scheduler: the epoch fence, the writer, the fired marker.
struct ClusterSink {
    writer: WriterSink,
    cluster: Weak<Cluster>,
    owned: Arc<Owned>,
}

impl Sink for ClusterSink {
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let o = self.owned.clone();
        let cluster = self.cluster.clone();
        let (id, k) = (m.id.clone(), m.index);
        // The fence: a partition that moved hands nothing more to the writer.
        let send = if o.may_fire() {
            Some(self.writer.fire(m))
        } else {
            None
        };
        Box::pin(async move {
            let Some(send) = send else {
                return outcome(
                    Code::ShuttingDown.as_i32(),
                    "partition moved to another node".to_string(),
                );
            };
            let out = send.await;
            let dead = match &out {
                Outcome::Delivered => Some(None),
                Outcome::Permanent { reason } => Some(Some((reason.code, reason.message.clone()))),
                Outcome::Retry { .. } => None,
            };
            if let (Some(dead), Some(cluster)) = (dead, cluster.upgrade()) {
                // The scheduler stores its own completion a moment later (after this append),
                // with its own clock reading; the two differ by the append's latency.
                let e = Entry::Fired {
                    id,
                    k,
                    epoch: o.epoch.load(Ordering::Acquire),
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    dead,
                };
                if let Err(err) = cluster.append(o.partition, &e).await {
                    // The occurrence may fire again after a failover (at least once).
                    tracing::warn!(partition = o.partition, error = %err, "delay cluster: fired marker not journaled");
                }
            }
            out
        })
    }

    fn finished(&self, id: &str) {
        if let Some(c) = self.cluster.upgrade() {
            c.forget(self.owned.partition, id);
        }
    }
}
