//! The embedded delay-message scheduler: a durable store (redb or sled, `kv/`) mutated by one
//! group-committing writer (`commit.rs`), a near-window timing wheel fed by a loader
//! (`loader.rs`; the wheel-membership protocol is stated in `membership.rs`), and batched firing
//! through a sink (`fire.rs`) whose typed outcome the caller decides.
//!
//! Modules and their arrows, with no circle: `facade` (the `Scheduler`) → `fire` → `loader`,
//! `upkeep` → `inner` (what the tasks share) → `membership`, `commit` → `store` → `kv` (the
//! engines) → `error`; `journal` → `store`; `config`, `sink`, `stats`, `record`, `wheel`,
//! `clock` and `scope` are leaves.

mod clock;
mod commit;
mod config;
mod error;
mod facade;
mod fire;
mod inner;
mod journal;
mod kv;
mod loader;
mod membership;
mod record;
mod scope;
mod sink;
mod stats;
mod store;
mod upkeep;
mod wheel;

pub use commit::{CommitStats, GROUP_SIZE_BUCKETS, GROUP_US_BUCKETS};
pub use config::{CatchUp, Config};
pub use error::{SchedError, StoreError};
pub use facade::{Scheduler, Status};
pub use journal::{JournalEntry, JournalStore};
pub use kv::EngineKind;
pub use record::{to_ms, Corrupt, Dec, DelayId, Enc, Kind, Record, MS_THRESHOLD};
pub use scope::TaskScope;
pub use sink::{FireMessage, Outcome, Reason, Sink};
pub use stats::{Stats, LATENESS_BUCKETS_MS};
pub use store::{CancelResult, DeadLetter, DoneEntry, Final};

/// The store alone, for this crate's own crash tests and benchmarks: not part of the API.
#[doc(hidden)]
pub mod internals {
    pub use crate::clock::now_ms;
    pub use crate::store::{Db, FireEnd, Mutation, Store};
}
