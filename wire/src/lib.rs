//! The wire contract of pproxy (wire.md): the Thrift codec (framed, compact or binary), the IDL
//! types, the result codes, and a small async client. A crate of its own so the fuzz targets,
//! the load generator and other clients build without the proxy's broker libraries.

pub mod client;
pub mod codec;
pub mod codes;
#[cfg(feature = "http")]
pub mod http;
pub mod types;

pub use codec::{DecodeError, MessageHeader, Protocol};
pub use codes::Code;
pub use types::{Call, DelayMessage, Message, Method};

/// The heartbeat topic (wire.md §5).
pub const HEARTBEAT_TOPIC: &str = "carrera_heartbeat";
