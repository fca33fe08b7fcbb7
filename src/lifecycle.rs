//! Who owns the process's tasks: one cancellation token that tells every task to end and one
//! task tracker that knows when they have. Every task pproxy spawns goes through [`Tasks`], so a
//! shutdown can wait for all of them instead of polling counters, and a test can check that none
//! outlives the server. The order in which the phases end is written once, in `runtime::drain`.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The owner of every task of one running proxy (cheap to clone; clones share both halves).
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// A fresh owner: no task yet, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut`, tracked; it runs to its end (use [`Tasks::spawn_until_shutdown`] for loops).
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Spawns `fut`, tracked, and drops it at its next await point once shutdown is called: for
    /// watchers and accept loops that never end by themselves.
    pub fn spawn_until_shutdown<F>(&self, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = token.cancelled() => {}
            }
        })
    }

    /// Runs a blocking closure on the blocking pool, tracked.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(f)
    }

    /// A token cancelled at shutdown at the latest; cancelling it ends one phase early (stop
    /// accepting, close connections) without touching the others.
    pub fn phase(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// The tracker itself, for a library that spawns its own tasks (the delay scheduler).
    pub fn tracker(&self) -> TaskTracker {
        self.tracker.clone()
    }

    /// Whether shutdown was called.
    pub fn is_shut_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Tells every task to end and waits for all of them, at most `bound`; true when none is left.
    pub async fn shutdown(&self, bound: Duration) -> bool {
        self.tracker.close();
        self.token.cancel();
        tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// A group of tasks whose end one phase waits for (the connections of the Thrift port), tracked
/// by the process's [`Tasks`] too.
#[derive(Clone, Debug, Default)]
pub struct Group {
    tracker: TaskTracker,
}

impl Group {
    /// A new, empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` through `tasks`, counted in this group as well.
    pub fn spawn<F>(&self, tasks: &Tasks, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tasks.spawn(self.tracker.track_future(fut))
    }

    /// Waits until every task of the group ended, at most `bound`; true when none is left. No
    /// task may join the group afterwards.
    pub async fn join(&self, bound: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_ends_loops_and_waits_for_them() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn_until_shutdown(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        assert_eq!(tasks.running(), 1);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(tasks.running(), 0);
        // The loop's future was dropped, so its sender is gone.
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn a_phase_ends_before_shutdown_and_with_it() {
        let tasks = Tasks::new();
        let early = tasks.phase();
        let late = tasks.phase();
        early.cancel();
        assert!(early.is_cancelled() && !late.is_cancelled() && !tasks.is_shut_down());
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
        assert!(late.is_cancelled());
    }

    #[tokio::test]
    async fn a_group_is_joined_alone() {
        let tasks = Tasks::new();
        let group = Group::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        group.spawn(&tasks, async move {
            let _ = rx.await;
        });
        tasks.spawn_until_shutdown(std::future::pending());
        assert!(!group.join(Duration::from_millis(20)).await);
        let _ = tx.send(());
        assert!(group.join(Duration::from_secs(5)).await);
        assert_eq!(tasks.running(), 1, "the other task is not the group's");
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn shutdown_reports_a_task_that_does_not_end() {
        let tasks = Tasks::new();
        tasks.spawn(tokio::time::sleep(Duration::from_secs(60)));
        assert!(!tasks.shutdown(Duration::from_millis(20)).await);
        assert_eq!(tasks.running(), 1);
    }
}
