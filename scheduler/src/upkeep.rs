//! Upkeep beside the drive loop: reopening a failed store, trimming by retention, watching for a
//! stuck store, counting dead letters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::commit::CommitStats;
use crate::error::StoreError;
use crate::inner::{blocking, Inner};
use crate::membership::lock;
use crate::store::Mutation;

/// How often `drive` looks again while the store is failed.
pub(crate) const STORE_FAILED_POLL: Duration = Duration::from_millis(100);
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
pub(crate) async fn recover(inner: Arc<Inner>) {
    let mut wait = REOPEN_FIRST;
    while !inner.stop.is_cancelled() {
        // Healthy: look again after a poll. Failed: wait the backoff, then reopen.
        let failed = inner.store.is_failed();
        if !failed {
            wait = REOPEN_FIRST;
        }
        let idle = if failed { wait } else { STORE_FAILED_POLL };
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = inner.stop.cancelled() => return,
        }
        if !failed {
            continue;
        }
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
                lock(&inner.state).reload(now_ms());
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

/// How long the commit group in flight has run, ms, if that is at least `bound` ms (0: never).
pub(crate) fn stuck_ms(stats: &CommitStats, bound: i64) -> Option<i64> {
    let started = stats.group_started_ms.load(Ordering::Acquire);
    if bound <= 0 || started == 0 {
        return None;
    }
    let ms = now_ms() - started;
    (ms >= bound).then_some(ms)
}

/// How often `watch_stuck` looks at the committer.
pub(crate) const STUCK_POLL: Duration = Duration::from_millis(250);

/// Says in the log when the store gets stuck (a commit group in flight longer than
/// `stuck_after_ms`: a flush that does not return, as after an ext4 abort or a frozen or hung
/// device) and when it returns. Meanwhile adds and cancels are refused (`SchedError::Stuck`)
/// and `store_stuck_ms` answers, for `/ready` and the metrics.
pub(crate) async fn watch_stuck(inner: Arc<Inner>) {
    let mut stuck_since: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STUCK_POLL) => {}
            _ = inner.stop.cancelled() => return,
        }
        let now = stuck_ms(&inner.committer.stats, inner.cfg.stuck_after_ms);
        match (stuck_since, now) {
            (None, Some(ms)) => {
                tracing::error!(
                    in_flight_ms = ms,
                    bound_ms = inner.cfg.stuck_after_ms,
                    "delay store stuck: a commit has not returned; adds and cancels answer 10 \
                     until it does"
                );
                stuck_since = Some(now_ms() - ms);
            }
            (Some(since), None) => {
                tracing::warn!(
                    stuck_ms = now_ms() - since,
                    "delay store no longer stuck: the commit returned"
                );
                stuck_since = None;
            }
            _ => {}
        }
    }
}

/// How often the dead letters are counted.
pub(crate) const DEAD_COUNT_POLL: Duration = Duration::from_millis(250);

/// Counts the dead letters every `DEAD_COUNT_POLL` on the blocking pool. A store that hangs
/// (a frozen filesystem: redb holds its state lock in a commit that grows the file) holds this
/// loop, not the metrics scrape that reads the count.
pub(crate) async fn count_dead(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEAD_COUNT_POLL) => {}
            _ = inner.stop.cancelled() => return,
        }
        refresh_dead_count(&inner).await;
    }
}

/// Counts the dead letters now.
pub(crate) async fn refresh_dead_count(inner: &Arc<Inner>) {
    let store = inner.store.clone();
    let n = blocking(move || store.dead_count()).await;
    inner.stats.dead_letters.store(n as u64, Ordering::Relaxed);
}

/// Trims finished ids and dead letters past retention, once a minute.
pub(crate) async fn trim(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = inner.stop.cancelled() => return,
        }
        let now = now_ms();
        let m = Mutation::Trim {
            before_ms: now - inner.cfg.done_retention_sec.saturating_mul(1000),
            dead_before_ms: now - inner.cfg.dead_retention_sec.saturating_mul(1000),
            limit: 10_000,
        };
        let _ = inner.committer.commit(m).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_past_the_bound_and_never_when_idle_or_off() {
        let stats = CommitStats::default();
        assert_eq!(stuck_ms(&stats, 1000), None, "idle committer");
        stats
            .group_started_ms
            .store(now_ms() - 300, Ordering::Release);
        assert_eq!(
            stuck_ms(&stats, 1000),
            None,
            "a group younger than the bound"
        );
        stats
            .group_started_ms
            .store(now_ms() - 2500, Ordering::Release);
        assert!(stuck_ms(&stats, 1000).is_some_and(|ms| ms >= 2500));
        assert_eq!(stuck_ms(&stats, 0), None, "0 turns detection off");
    }
}
