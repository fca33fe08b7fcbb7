//! The embedded delay-message scheduler: a durable store (redb or sled, `kv/`) mutated by one
//! group-committing writer,
//! a near-window timing wheel fed by a loader, and batched firing through a sink.

pub mod commit;
pub mod engine;
mod error;
pub mod kv;
pub mod record;
pub mod store;
pub mod wheel;

pub use engine::{Config, FireMessage, SchedError, Scheduler, Sink, Status};
pub use record::{DelayId, Kind, Record};
pub use store::{CancelResult, CatchUp, EngineKind, StoreError};
