//! Where fired messages go, and how a fire ended as the sink decides it.

use std::future::Future;
use std::pin::Pin;

/// The message handed to the writer when an occurrence fires (delay.md §5.4).
#[derive(Debug, Clone)]
pub struct FireMessage {
    /// Delay topic.
    pub topic: String,
    /// Occurrence id (the message key).
    pub key: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Tags.
    pub tags: Option<String>,
    /// Properties (the sink adds `from_chronos`).
    pub properties: Vec<(String, String)>,
    /// Due time, epoch ms.
    pub due_ms: i64,
    /// Canonical (add) id of the record.
    pub id: String,
    /// Occurrence index fired.
    pub index: u64,
}

/// Why a fire failed: a code and a message chosen by the sink. The scheduler does not read
/// them; it records them as given in a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The sink's result code.
    pub code: i32,
    /// The sink's message.
    pub message: String,
}

/// How one fire ended, as the sink decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: the occurrence is done.
    Delivered,
    /// Failed for now: fired again after a backoff, dead-lettered with `reason` once the retry
    /// budget is spent.
    Retry {
        /// Why it failed.
        reason: Reason,
    },
    /// Failed for good: dead-lettered at once with `reason`.
    Permanent {
        /// Why it failed.
        reason: Reason,
    },
}

/// Where fired messages go.
pub trait Sink: Send + Sync + 'static {
    /// Hands one message on; resolves to how that ended.
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

    /// Record `id` finished (last occurrence fired or dead-lettered); its completion is stored.
    fn finished(&self, _id: &str) {}
}
