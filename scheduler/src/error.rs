//! The scheduler's errors: storage failures and what add and cancel answer.

use std::path::PathBuf;
use std::sync::Arc;

use crate::record::Corrupt;

/// A failure of the engine, with the engine's own message; whether it was an I/O error is
/// all the store needs to know about it.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct EngineError {
    source: Box<dyn std::error::Error + Send + Sync>,
    io: bool,
}

impl EngineError {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static, io: bool) -> EngineError {
        EngineError {
            source: Box::new(e),
            io,
        }
    }

    /// An I/O error of the data directory: the engine fails every later write until reopened.
    pub(crate) fn is_io(&self) -> bool {
        self.io
    }
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed.
    #[error("storage: {0}")]
    Engine(#[from] EngineError),
    /// A stored value could not be decoded.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The journal probe after a sync failed (`kv/probe.rs`): the sync may not have been
    /// durable.
    #[error("storage: the file system stopped committing after a sync: {0}")]
    Probe(std::io::Error),
    /// The committer thread is gone (the scheduler is stopping).
    #[error("storage: committer stopped")]
    Stopped,
    /// The database was closed after an I/O error and is not open again yet (disk full,
    /// read-only filesystem); the scheduler keeps trying to reopen it.
    #[error("storage unavailable: closed after an I/O error, reopening")]
    Unavailable,
    /// The directory holds a store written by fjall, an engine removed in issue 17.
    #[error(
        "storage: {0} holds a delay store written by fjall, which this version no longer \
         supports (removed: it could not always reopen after a disk abort); move the directory \
         away to start a new store (its pending messages are then not fired), or drain it with \
         an older pproxy first"
    )]
    Fjall(PathBuf),
}

impl StoreError {
    /// An I/O error of the data directory. Both engines fail every later write after their
    /// first one (sled keeps the error, redb's redo log is broken) until the database is
    /// opened again.
    pub fn is_io(&self) -> bool {
        match self {
            StoreError::Engine(e) => e.is_io(),
            StoreError::Probe(_) => true,
            _ => false,
        }
    }
}

/// Scheduler failures seen by add/cancel.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
    /// `maxPending` reached.
    #[error("too many pending records")]
    Full,
    /// Shutting down.
    #[error("scheduler stopped")]
    Stopped,
    /// The store is stuck: a commit group has been in flight this many ms (a flush that does not
    /// return); refused at once instead of queueing behind it.
    #[error("storage stuck: a commit has been in flight for {0} ms")]
    Stuck(i64),
}
