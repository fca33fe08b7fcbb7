//! Scheduler settings (`scheduler.*`, delay.md §7).

use crate::kv::EngineKind;

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
    pub engine: EngineKind,
    /// Fire pacing, fires per second; 0 = unlimited.
    pub fire_max_tps: u64,
    /// A commit group in flight longer than this means the store is stuck (a flush that does not
    /// return): adds and cancels are refused at once until it returns; 0 = never.
    pub stuck_after_ms: i64,
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
            engine: EngineKind::default(),
            fire_max_tps: 0,
            stuck_after_ms: 5000,
        }
    }
}

/// Catch-up policy for loops (delay.md §5.3).
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    /// `skip` (true) or `all`.
    pub skip: bool,
    /// Lateness tolerated before skipping, ms.
    pub late_tolerance_ms: i64,
    /// `all`: most overdue occurrences fired in a row.
    pub max_catch_up: u32,
}
