//! Gives memory back to the OS after many connections closed. glibc keeps what freed
//! connections used (their tasks and read buffers, small allocations spread over the heap) and
//! its automatic trim only releases the top of a heap, so after a storm of 10 000 idle
//! connections RSS stayed 180 MB above its baseline for good. `malloc_trim(0)` releases every
//! free page of every arena (measured: 194 MB back to 21 MB, baseline 17 MB). It walks the heap
//! under the arena locks, so it runs on the blocking pool and only after many closes.

use std::sync::Arc;
use std::time::Duration;

use super::traffic::Traffic;

/// How often the close count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Closes since the last trim that call for another.
const CLOSES_PER_TRIM: u64 = 1000;

/// Trims the allocator whenever at least `CLOSES_PER_TRIM` connections closed since the last
/// trim; runs until shutdown (a task of the process).
pub async fn after_connection_storms(traffic: Arc<Traffic>) {
    let mut trimmed_at = traffic.closed_total();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let closed = traffic.closed_total();
        if closed.saturating_sub(trimmed_at) < CLOSES_PER_TRIM {
            continue;
        }
        trimmed_at = closed;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only rearranges glibc's own free lists.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "allocator trimmed after connections closed");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
