//! The wire contract: Thrift codec, IDL types and result codes.

pub mod codec;
pub mod codes;
pub mod types;

pub use codec::{DecodeError, MessageHeader, Protocol};
pub use codes::Code;
pub use types::{Call, DelayMessage, Message, Method};

/// The heartbeat topic (wire.md §5).
pub const HEARTBEAT_TOPIC: &str = "carrera_heartbeat";
