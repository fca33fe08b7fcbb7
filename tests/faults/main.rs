//! Fault injection against the real servers: brokers and ZooKeeper stopped under load, pproxy
//! killed with SIGKILL, the store's file system full, read-only or frozen. A test that stops a
//! shared server holds `common::STACK` for writing; the others hold it for reading, so no test
//! loses its server to another one. Skips as the stack tests do.

#![recursion_limit = "256"]

#[path = "../common/mod.rs"]
mod common;

mod broker_outage;
mod dashboards;
mod delay_crash;
mod disk_trouble;
mod rocketmq_refusal;
mod zookeeper;
