//! Where the scheduler's tasks live: the caller's task tracker and a stop token, so that the
//! process that embeds the scheduler can join every task it spawned and a shutdown is signalled,
//! not polled.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tracker the scheduler spawns its tasks on (drive loop, upkeep, one task per fire) and
/// the token that stops them: cancelled by [`crate::Scheduler::shutdown`], or earlier by its
/// owner. `TaskScope::default()` gives a scheduler tasks of its own.
#[derive(Clone, Debug, Default)]
pub struct TaskScope {
    /// Every task of the scheduler is spawned on it.
    pub tracker: TaskTracker,
    /// Cancelled when the scheduler must stop.
    pub stop: CancellationToken,
}
