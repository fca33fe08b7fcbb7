//! Counters and gauges of a running scheduler, for metrics and status.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
    /// Dead letters kept, as last counted by `upkeep::count_dead` (a store read, which may
    /// block while the store hangs: metrics and status must not).
    pub dead_letters: AtomicU64,
}

/// Upper bounds (ms) of the lateness buckets.
pub const LATENESS_BUCKETS_MS: [u64; 9] = [1, 5, 10, 50, 100, 500, 1000, 5000, 60_000];

impl Stats {
    pub(crate) fn observe_lateness(&self, ms: u64) {
        let i = LATENESS_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(9);
        self.lateness[i].fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
