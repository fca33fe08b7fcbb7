//! Configuration as data: carrera.yaml, the DDMQ documents and the ZooKeeper layout. What is in
//! force, and its reloads, is `crate::live`.

pub mod duration;
pub mod lenient;
pub mod model;
pub mod settings;
pub mod zk;

/// Target of configuration events (`config.log` gets them too).
pub const LOG_TARGET: &str = "pproxy::config";

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
