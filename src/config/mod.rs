//! Configuration: carrera.yaml, the DDMQ documents, and the snapshot requests read.

pub mod lenient;
pub mod model;
pub mod reload;
pub mod settings;
pub mod snapshot;
pub mod zk;

/// A configuration document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Invalid content, with the failing check.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A producer could not be built.
    #[error("cannot build producer for cluster {0}: {1}")]
    Producer(String, String),
}
