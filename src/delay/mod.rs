//! Delay messages (delay.md): `sendDelaySync` validation and ids, the delay service in front of
//! the scheduler (single-node) or the journal (cluster mode), and the sink that fires through the
//! proxy's writer.

pub mod cluster;
pub mod dead;
pub mod id;
mod metrics;
mod request;
pub mod service;
pub mod sink;
pub mod status;
pub mod validate;

pub use metrics::Gauges;
pub use scheduler::{to_ms, MS_THRESHOLD};
pub use service::DelayService;
pub use validate::{build_add, validate};
