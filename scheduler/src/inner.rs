//! What the scheduler's tasks share: the store, the committer, the sink, the membership state
//! (`membership.rs`) and the task owners. The facade builds it; the loader, the drive loop and
//! the upkeep loops each add their own `impl Inner` in their file.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commit::Committer;
use crate::config::Config;
use crate::membership::State;
use crate::sink::Sink;
use crate::stats::Stats;
use crate::store::Store;

/// What the scheduler's tasks share.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) committer: Committer,
    pub(crate) cfg: Config,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) state: Mutex<State>,
    pub(crate) wake: Notify,
    pub(crate) fire_slots: Arc<Semaphore>,
    /// Completions handed to the committer and not yet stored.
    pub(crate) completion_slots: Arc<Semaphore>,
    /// Cancelled at shutdown: no new add or fire; the loops end.
    pub(crate) stop: CancellationToken,
    /// Every task of this scheduler (the owner's tracker).
    pub(crate) tasks: TaskTracker,
    /// The fire tasks alone, which shutdown waits for.
    pub(crate) fires: TaskTracker,
    pub(crate) stats: Stats,
}

/// Runs blocking store work on the blocking pool; a panic there resumes here.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
