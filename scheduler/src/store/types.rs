//! The store's domain types: final states, cancel results, done entries, dead letters, and the
//! mutations the committer applies with what each did.

use crate::config::CatchUp;
use crate::record::Record;

/// Final states kept in `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// One-shot fired.
    Fired = 1,
    /// Loop ended.
    Completed = 2,
    /// Cancelled while pending.
    Cancelled = 3,
    /// Dead-lettered (one-shot).
    Dead = 4,
    /// A cancel arrived for an id never seen; remembered so a late add stays cancelled.
    CancelledUnknown = 5,
}

impl Final {
    pub(super) fn from_u8(v: u8) -> Final {
        match v {
            1 => Final::Fired,
            2 => Final::Completed,
            3 => Final::Cancelled,
            4 => Final::Dead,
            _ => Final::CancelledUnknown,
        }
    }

    /// Status-API name.
    pub fn name(self) -> &'static str {
        match self {
            Final::Fired => "fired",
            Final::Completed => "completed",
            Final::Cancelled => "cancelled",
            Final::Dead => "dead",
            Final::CancelledUnknown => "unknown",
        }
    }
}

/// Result of a cancel (delay.md §5.1, operations.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// Pending record deleted.
    Cancelled = 1,
    /// Id never seen (remembered).
    Unknown = 2,
    /// Id already finished.
    AfterFinish = 3,
    /// Pending under another topic: not cancelled.
    TopicMismatch = 4,
    /// Pending, but added by another principal: not cancelled.
    NotOwner = 5,
}

impl CancelResult {
    pub(super) fn from_u8(v: u8) -> CancelResult {
        match v {
            1 => CancelResult::Cancelled,
            2 => CancelResult::Unknown,
            3 => CancelResult::AfterFinish,
            5 => CancelResult::NotOwner,
            _ => CancelResult::TopicMismatch,
        }
    }

    /// Status-API name.
    pub fn name(self) -> &'static str {
        match self {
            CancelResult::Cancelled => "cancelled",
            CancelResult::Unknown => "unknown",
            CancelResult::AfterFinish => "after_finish",
            CancelResult::TopicMismatch => "topic_mismatch",
            CancelResult::NotOwner => "not_owner",
        }
    }
}

/// A finished id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneEntry {
    /// Final state.
    pub state: Final,
    /// When it finished, epoch ms.
    pub finished_ms: i64,
    /// Last occurrence index.
    pub last_index: u64,
    /// Cancel attempts (at ms, result), bounded.
    pub cancels: Vec<(i64, CancelResult)>,
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Canonical id.
    pub id: String,
    /// Occurrence index.
    pub k: u64,
    /// Record snapshot.
    pub record: Record,
    /// Last code.
    pub code: i32,
    /// Last message.
    pub msg: String,
    /// When it was dead-lettered.
    pub dead_ms: i64,
}

/// How one fire attempt ended, as the completion records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireEnd {
    /// Stored by the broker.
    Ok,
    /// Retry at `at_ms`.
    Retry {
        /// When to try again.
        at_ms: i64,
    },
    /// Dead-letter this occurrence.
    Dead {
        /// Last result code.
        code: i32,
        /// Last message.
        msg: String,
    },
}

/// One mutation applied by the committer.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Store a new record (idempotent by id).
    Add {
        /// Canonical id.
        id: String,
        /// The record.
        record: Box<Record>,
    },
    /// Cancel a canonical id.
    Cancel {
        /// Canonical id.
        id: String,
        /// Topic of the request.
        topic: String,
        /// Request time, epoch ms.
        at_ms: i64,
        /// The requesting principal when ACLs are on: a record added by another one stays.
        principal: Option<String>,
    },
    /// Finish a fire attempt of occurrence `k`.
    Complete {
        /// Canonical id.
        id: String,
        /// Occurrence index fired.
        k: u64,
        /// Outcome.
        end: FireEnd,
        /// Completion time, epoch ms.
        now_ms: i64,
        /// Loop catch-up policy.
        catch_up: CatchUp,
    },
    /// Drop a pending record that another node finished (a cluster-journal tombstone, written
    /// only after the id was fired to the end or cancelled), without firing it.
    Forget {
        /// Canonical id.
        id: String,
        /// When the tombstone was read, epoch ms.
        at_ms: i64,
    },
    /// Apply `inner` (an add, cancel or completion read from a cluster journal) and store
    /// `offset` as the journal position applied, in the same transaction (delay.md §10).
    Journaled {
        /// Journal offset of the record.
        offset: u64,
        /// The mutation it carries.
        inner: Box<Mutation>,
    },
    /// Delete `done` entries finished before `before_ms` and dead letters older than
    /// `dead_before_ms`, at most `limit` of each.
    Trim {
        /// Done retention bound.
        before_ms: i64,
        /// Dead retention bound.
        dead_before_ms: i64,
        /// Batch bound.
        limit: usize,
    },
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Add stored a new record due at `due_ms`.
    Added {
        /// Due time of occurrence 0.
        due_ms: i64,
    },
    /// Add found the id pending or finished: nothing changed.
    AddExisting,
    /// Cancel outcome.
    Cancel(CancelResult),
    /// Completion: the record is due again at `due_ms` (retry or next loop occurrence).
    Rescheduled {
        /// New due time.
        due_ms: i64,
        /// Occurrences skipped by catch-up.
        skipped: u64,
        /// Whether the occurrence was dead-lettered.
        dead: bool,
    },
    /// Completion finished the record.
    Finished(Final),
    /// Completion for a record no longer pending at that index (cancelled meanwhile).
    Stale,
    /// Trim removed this many entries.
    Trimmed(usize),
}
