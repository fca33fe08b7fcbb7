//! The Thrift server: listener, per-connection frame loop, and method dispatch.

pub mod connection;
pub mod dispatch;
pub mod listener;
