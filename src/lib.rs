//! pproxy: a DDMQ-compatible producer proxy (Thrift in, Kafka/RocketMQ out).

#![recursion_limit = "256"]

pub mod admin;
pub mod config;
pub mod delay;
pub mod forward;
pub mod http;
pub mod lifecycle;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod runtime;
pub mod security;
pub mod server;
pub mod writer;

/// The wire contract (crate `pproxy-wire`).
pub use pproxy_wire as proto;
/// The Thrift client (crate `pproxy-wire`).
pub use pproxy_wire::client;
