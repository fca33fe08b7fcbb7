//! A store kept in step with a cluster journal (delay.md §10): opened and brought up to date
//! from the journal before a scheduler fires over it. While the scheduler runs, journal
//! records reach the store through `Scheduler::add_journaled` and `cancel_journaled`.

use std::path::Path;

use crate::config::CatchUp;
use crate::error::StoreError;
use crate::kv::EngineKind;
use crate::record::Record;
use crate::store::{FireEnd, Mutation, Store};

/// A journal record as the store applies it.
#[derive(Debug, Clone)]
pub enum JournalEntry {
    /// An add (idempotent by id).
    Add {
        /// Canonical id.
        id: String,
        /// The record.
        record: Box<Record>,
    },
    /// A cancel.
    Cancel {
        /// Canonical id.
        id: String,
        /// Topic of the request.
        topic: String,
        /// Request time, epoch ms.
        at_ms: i64,
        /// The requesting principal when ACLs are on.
        principal: Option<String>,
    },
    /// Occurrence `k` was fired (or dead-lettered) by an earlier owner: it is not fired again.
    Fired {
        /// Canonical id.
        id: String,
        /// Occurrence index.
        k: u64,
        /// The dead-letter code and message when it was dead-lettered.
        dead: Option<(i32, String)>,
        /// When the earlier owner fired it, epoch ms (loops continue from there).
        at_ms: i64,
    },
    /// The id finished on an earlier owner (a tombstone): a pending record is dropped unfired.
    Forget {
        /// Canonical id.
        id: String,
        /// When the tombstone was read, epoch ms.
        at_ms: i64,
    },
}

impl JournalEntry {
    fn mutation(self, catch_up: CatchUp) -> Mutation {
        match self {
            JournalEntry::Add { id, record } => Mutation::Add { id, record },
            JournalEntry::Cancel {
                id,
                topic,
                at_ms,
                principal,
            } => Mutation::Cancel {
                id,
                topic,
                at_ms,
                principal,
            },
            JournalEntry::Fired { id, k, dead, at_ms } => Mutation::Complete {
                id,
                k,
                end: match dead {
                    Some((code, msg)) => FireEnd::Dead { code, msg },
                    None => FireEnd::Ok,
                },
                now_ms: at_ms,
                catch_up,
            },
            JournalEntry::Forget { id, at_ms } => Mutation::Forget { id, at_ms },
        }
    }
}

/// A store brought up to date from a journal; `Scheduler::start` fires over it.
#[derive(Clone)]
pub struct JournalStore {
    store: Store,
}

impl JournalStore {
    /// Opens (or creates, with `engine`) the store in `path`; blocks.
    pub fn open(
        path: &Path,
        cache_bytes: u64,
        engine: EngineKind,
    ) -> Result<JournalStore, StoreError> {
        Ok(JournalStore {
            store: Store::open_with(path, cache_bytes, engine)?,
        })
    }

    /// The journal offset applied last, if any; blocks.
    pub fn offset(&self) -> Result<Option<u64>, StoreError> {
        self.store.db()?.journal_offset()
    }

    /// Applies journal records, each with its offset, in one transaction; blocks. Not durable
    /// until the next flush: a crash replays them again from the stored offset.
    pub fn replay(
        &self,
        entries: Vec<(u64, JournalEntry)>,
        catch_up: CatchUp,
    ) -> Result<(), StoreError> {
        let ms: Vec<Mutation> = entries
            .into_iter()
            .map(|(offset, e)| Mutation::Journaled {
                offset,
                inner: Box::new(e.mutation(catch_up)),
            })
            .collect();
        let refs: Vec<&Mutation> = ms.iter().collect();
        self.store.db()?.apply_group(&refs).map(|_| ())
    }

    pub(crate) fn into_store(self) -> Store {
        self.store
    }
}
