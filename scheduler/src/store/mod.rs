//! The durable store: records, time index, final states and dead letters in six trees,
//! mutated in multi-tree transactions (delay.md §8.1), over one of the engines of `kv/`.
//!
//! `schema.rs` is the key layout and value codecs, `types.rs` the domain types, `mutate.rs`
//! one function per mutation kind, `db.rs` the reads and writes of one opening; this file is
//! the handle that opens, notes failures and reopens. Every call blocks on the engine; the
//! scheduler calls them from the committer thread or a blocking-pool thread, never from the
//! async runtime's workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

mod db;
mod mutate;
mod schema;
mod types;

pub use crate::error::StoreError;
pub use crate::kv::EngineKind;
pub use db::Db;
pub(crate) use schema::due_key;
pub use types::{Applied, CancelResult, DeadLetter, DoneEntry, Final, FireEnd, Mutation};

/// The durable store: a handle shared by the committer, the loader and the fire path; reads and
/// writes go through the opening it hands out (`db`).
///
/// Both engines keep the first I/O error of their log writer (ENOSPC, EROFS, EIO) and fail every
/// later write with it, even after the disk has space again (sled's error state, the redb
/// engine's broken redo log); only opening the database again clears it. The store therefore
/// notes the first I/O error (`is_failed`) and `reopen` closes and re-opens the database in
/// place; while it is closed `db` answers `StoreError::Unavailable`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    cache_bytes: u64,
    kind: EngineKind,
    current: RwLock<Option<Arc<Db>>>,
    health: Arc<Health>,
    reopens: AtomicU64,
}

/// Whether the store saw an I/O error since it was last opened.
pub(crate) struct Health {
    path: PathBuf,
    failed: AtomicBool,
}

impl Health {
    /// Notes the first I/O error of an operation's result.
    fn note<T>(&self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &out {
            if e.is_io() && !self.failed.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "delay store: I/O error; writes fail until the database is reopened"
                );
            }
        }
        out
    }
}

/// Meta key written and flushed by `reopen` to prove the database writable.
const PROBE_KEY: &str = "reopen_probe";

impl Store {
    /// Opens the store in `path`, creating it with `wanted` when the directory holds none. A
    /// directory that already holds a store of the other engine is opened with that engine
    /// (with a warning): pending messages are never left behind by a setting change. A
    /// directory written by fjall is refused (`StoreError::Fjall`).
    pub fn open_with(
        path: &Path,
        cache_bytes: u64,
        wanted: EngineKind,
    ) -> Result<Store, StoreError> {
        let kind = match EngineKind::detect(path)? {
            Some(found) if found != wanted => {
                tracing::warn!(
                    path = %path.display(),
                    configured = wanted.name(),
                    found = found.name(),
                    "delay store: the data directory holds a store of another engine; opening \
                     it with that engine (move the directory away to start a new one)"
                );
                found
            }
            Some(found) => found,
            None => wanted,
        };
        let health = Arc::new(Health {
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
        });
        let db = Db::open(path, cache_bytes, kind, health.clone())?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                cache_bytes,
                kind,
                current: RwLock::new(Some(Arc::new(db))),
                health,
                reopens: AtomicU64::new(0),
            }),
        })
    }

    /// The open database. Calls that must all reach the same one hold it: the committer
    /// applies a group and flushes it through one `Db`, so that a reopen in between can never
    /// make a flush of the new database answer for writes made to the old one. A reopen waits
    /// (bounded) until every holder dropped it.
    pub fn db(&self) -> Result<Arc<Db>, StoreError> {
        let cur = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        cur.clone().ok_or(StoreError::Unavailable)
    }

    fn set_current(&self, db: Option<Arc<Db>>) -> Option<Arc<Db>> {
        let mut cur = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *cur, db)
    }

    /// True after an I/O error, until a `reopen` succeeds.
    pub fn is_failed(&self) -> bool {
        self.shared.health.failed.load(Ordering::Acquire)
    }

    /// Successful reopens so far.
    pub fn reopens(&self) -> u64 {
        self.shared.reopens.load(Ordering::Relaxed)
    }

    /// The engine holding this store.
    pub fn engine(&self) -> EngineKind {
        self.shared.kind
    }

    /// Number of dead letters (0 while the store is closed).
    pub fn dead_count(&self) -> usize {
        self.db().map_or(0, |db| db.dead_count())
    }

    /// Closes the database and opens it again, then proves it writable with one flushed write.
    /// Operations still holding the old handle get up to `release` to finish (sled keeps its
    /// file lock until the last handle is gone). On failure the store stays closed (calls
    /// answer `Unavailable`) and `is_failed` stays true; call again later.
    pub fn reopen(&self, release: Duration) -> Result<(), StoreError> {
        if let Some(mut old) = self.set_current(None) {
            let until = Instant::now() + release;
            loop {
                match Arc::try_unwrap(old) {
                    // Dropping the last handle closes sled's files (its flush on drop gives up
                    // at once in the error state).
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(back) if Instant::now() >= until => {
                        // Still in use: keep it (reads may still work) and try again later.
                        self.set_current(Some(back));
                        return Err(StoreError::Unavailable);
                    }
                    Err(back) => {
                        old = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        let shared = &self.shared;
        let db = Db::open(
            &shared.path,
            shared.cache_bytes,
            shared.kind,
            shared.health.clone(),
        )?;
        db.set_meta(PROBE_KEY, &crate::clock::now_ms().to_be_bytes())?;
        db.flush()?;
        self.set_current(Some(Arc::new(db)));
        shared.health.failed.store(false, Ordering::Release);
        shared.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
