//! Integration tests against the real Apache Kafka, RocketMQ and ZooKeeper of `scripts/stack.sh`
//! (and Debian's Prometheus) on 127.0.0.1, none of which stops a server. Without the stack each
//! test that needs it says in one line why it is skipped; `PPROXY_REQUIRE_STACK=1` (set by
//! scripts/test.sh) turns that into a failure.

#![recursion_limit = "256"]

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod cluster_cancel;
mod cluster_parity;
mod drain;
mod kafka_delay;
mod kafka_forwarding;
mod prometheus;
mod rocketmq_forwarding;
mod security;
