//! Integration tests that need no server: each starts a real `pproxy` in embedded mode (its
//! in-process Kafka mock cluster) or runs the codec, the CLI or the store alone. A bare
//! `cargo test` runs all of them.

#![recursion_limit = "256"]

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod codec_vs_thrift_crate;
mod fuzz_regressions;
mod kafka_error_injection;
mod logging;
mod metrics;
mod rate_limit;
mod reload;
mod store_engine;
mod wire;
