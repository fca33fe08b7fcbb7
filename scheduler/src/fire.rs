//! Firing: the drive loop, one task per fire, the retry backoff and the completion.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::inner::{blocking, Inner};
use crate::loader::load;
use crate::membership::{lock, InFlight};
use crate::record::Record;
use crate::sink::{FireMessage, Outcome, Reason};
use crate::store::{Applied, FireEnd, Mutation};
use crate::upkeep::STORE_FAILED_POLL;

/// The drive loop: loads the near window, takes what is due from the wheel and hands it to
/// fire tasks (bounded by `fireConcurrency`, paced by `fireMaxTps`).
pub(crate) async fn drive(inner: Arc<Inner>) {
    // Fire pacing: each hand-out takes the next slot of a fixed cadence (no burst beyond it).
    let pace = (inner.cfg.fire_max_tps > 0)
        .then(|| Duration::from_nanos(1_000_000_000 / inner.cfg.fire_max_tps.max(1)));
    let mut next_slot = tokio::time::Instant::now();
    while !inner.stop.is_cancelled() {
        if inner.store.is_failed() {
            // Completions cannot be stored: firing now would repeat every occurrence until the
            // store is back. `recover` reloads the wheel from the reopened store.
            tokio::select! {
                _ = tokio::time::sleep(STORE_FAILED_POLL) => {}
                _ = inner.stop.cancelled() => return,
            }
            continue;
        }
        let now = now_ms();
        load(&inner, now).await;
        let expired = {
            let mut st = lock(&inner.state);
            let due = st.wheel.poll(now.max(0) as u64);
            let mut out = Vec::with_capacity(due.len());
            for (d, id) in due {
                if !st.inflight.contains_key(&id) {
                    debug_assert!(
                        !st.wheel.contains(&id),
                        "{id} polled but still in the wheel"
                    );
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
            let n = ids.len();
            let records = blocking(move || match store.db().and_then(|db| db.records(&ids)) {
                Ok(recs) => recs.into_iter().map(|r| r.map_err(Arc::new)).collect(),
                Err(e) => vec![Err(Arc::new(e)); n],
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
                if inner.stop.is_cancelled() {
                    // Left in flight: counted by shutdown, fired again after the restart.
                    return;
                }
                let fire = inner
                    .fires
                    .track_future(fire_one(inner.clone(), due, id, rec, permit));
                inner.tasks.spawn(fire);
            }
        }
        let period = inner.cfg.near_window_ms.clamp(10, 1000);
        let wait_ms = {
            let mut st = lock(&inner.state);
            let now = now_ms();
            let wait_ms = match st.wheel.next_expiration() {
                Some(n) => (n as i64 - now).clamp(0, period),
                None => period,
            };
            // Set with the read above, under one lock: an entry scheduled after it and due
            // before this wakes the loop (`schedule_if_loaded`); later ones need no wake-up.
            st.wake_at_ms = now + wait_ms;
            wait_ms
        };
        if wait_ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = inner.wake.notified() => {}
                _ = inner.stop.cancelled() => return,
            }
        }
    }
}

/// The message of occurrence `k` of `rec`.
pub(crate) fn fire_message(rec: &Record, k: u64) -> FireMessage {
    into_fire_message(rec.clone(), k)
}

/// `fire_message`, taking the body and the rest from `rec` instead of copying them.
fn into_fire_message(rec: Record, k: u64) -> FireMessage {
    FireMessage {
        key: rec.occurrence_id(k),
        due_ms: rec.due_ms(k),
        id: rec.id.to_string(),
        index: k,
        topic: rec.topic,
        body: rec.body,
        tags: rec.tags,
        properties: rec.properties,
    }
}

/// One fire (protocol states 3 and 4, `loader.rs`): checks that the record read for it is
/// still due at `due`, waits for that time, hands the message to the sink and submits the
/// completion.
async fn fire_one(
    inner: Arc<Inner>,
    due: i64,
    id: String,
    rec: Result<Option<Record>, Arc<StoreError>>,
    permit: OwnedSemaphorePermit,
) {
    debug_assert!(
        lock(&inner.state).inflight.contains_key(&id),
        "{id} fired but not in flight"
    );
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
        let now = now_ms();
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
    let (occurrence_due, attempts) = (rec.due_ms(k), rec.attempts);
    let handed = now_ms();
    inner.stats.observe_lateness((handed - due).max(0) as u64);
    // The record (and its body) is not kept while the sink and the committer work.
    let outcome = inner.sink.fire(into_fire_message(rec, k)).await;
    let now = now_ms();
    let dead = |reason: Reason| FireEnd::Dead {
        code: reason.code,
        msg: reason.message,
    };
    let end = match outcome {
        Outcome::Delivered => {
            inner.stats.fired[0].fetch_add(1, Ordering::Relaxed);
            FireEnd::Ok
        }
        Outcome::Permanent { reason } => {
            inner.stats.fired[2].fetch_add(1, Ordering::Relaxed);
            dead(reason)
        }
        Outcome::Retry { reason } => match inner.retry_at(occurrence_due, attempts, now) {
            Some(at_ms) => {
                inner.stats.fired[1].fetch_add(1, Ordering::Relaxed);
                FireEnd::Retry { at_ms }
            }
            None => {
                inner.stats.fired[2].fetch_add(1, Ordering::Relaxed);
                dead(reason)
            }
        },
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
    // waiting for the committer have their own bound (RAM bounded, delay.md §6.8).
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

impl Inner {
    /// When to retry an occurrence due at `occurrence_due` after its `attempts`-th failure at
    /// `now`; `None` once the retry budget is spent.
    fn retry_at(&self, occurrence_due: i64, attempts: u32, now: i64) -> Option<i64> {
        if now - occurrence_due > self.cfg.fire_retry_budget_sec.saturating_mul(1000) {
            return None;
        }
        let exp = attempts.min(30);
        let backoff = self
            .cfg
            .fire_retry_initial_ms
            .saturating_mul(1i64 << exp)
            .min(self.cfg.fire_retry_max_ms);
        Some(now + backoff.max(1))
    }
}
