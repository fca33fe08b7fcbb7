//! Writers: the broker side of the pipeline. One `Writers` set per configuration generation.

pub mod embedded;
pub mod error;
pub mod kafka;
pub mod retry;
pub mod rocketmq;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::metrics::ClusterMetrics;

pub use error::SendError;

/// One message as the writer sends it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Target topic (shared with its route: a record costs no copy of the name).
    pub topic: Arc<str>,
    /// Record key (Kafka) / KEYS (RocketMQ).
    pub key: Option<String>,
    /// Body bytes, unchanged.
    pub body: Bytes,
    /// Tags (Kafka header `TAGS` when non-empty).
    pub tags: Option<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
    /// Partition selector (>= 0 explicit, -1 hash, < -1 random).
    pub partition_id: i32,
    /// Ordering key for `partition_id == -1`.
    pub hash_id: i64,
    /// Options from the topic and proxy config.
    pub opts: SendOpts,
}

/// Per-message options that come from the topic and proxy config (RocketMQ only).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SendOpts {
    /// Random-partition retries stay on the same queue.
    pub strong_order: bool,
    /// Auto-batch bounds when `useAutoBatch` is on (also packs sendBatchSync chains).
    pub auto_batch: Option<BatchPolicy>,
    /// The topic's `autoBatch`: its small single messages may share a lane request.
    pub topic_auto_batch: bool,
}

/// Auto-batch bounds (forwarding.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Running body total of a batch stays below this.
    pub max_bytes: usize,
    /// Only bodies smaller than this are batched.
    pub threshold: usize,
    /// Messages per batch request.
    pub max_messages: usize,
}

impl BatchPolicy {
    /// The policy of a proxy config, when auto-batch is on.
    pub fn from_config(c: &crate::config::model::CarreraConfiguration) -> Option<BatchPolicy> {
        c.use_auto_batch.then(|| BatchPolicy {
            max_bytes: c.auto_batch.max_bath_bytes.max(0) as usize,
            threshold: c.auto_batch.do_batch_threshold_bytes.max(0) as usize,
            max_messages: c.auto_batch.max_batch_messages_number.max(1) as usize,
        })
    }
}

/// The partition (or queue) index for `n` partitions (forwarding.md §6, §7.1).
pub fn partition_for(partition_id: i32, hash_id: i64, n: u32) -> u32 {
    let n = u64::from(n.max(1));
    let i = if partition_id >= 0 {
        partition_id as u64 % n
    } else if partition_id == -1 {
        hash_id.unsigned_abs() % n
    } else {
        rand::random::<u64>() % n
    };
    i as u32
}

/// A broker cluster's writer.
#[derive(Clone)]
pub enum ClusterWriter {
    /// A Kafka cluster.
    Kafka(Arc<kafka::KafkaCluster>),
    /// A RocketMQ cluster.
    Rocketmq(Arc<rocketmq::RocketmqCluster>),
}

impl ClusterWriter {
    /// Sends one record, answering by `deadline`.
    pub async fn send(&self, rec: &Record, deadline: Instant) -> Result<(), SendError> {
        match self {
            ClusterWriter::Kafka(k) => k.send(rec, deadline).await,
            ClusterWriter::Rocketmq(r) => r.send(rec, deadline).await,
        }
    }

    /// Sends records in order, pipelined; the result of each, in order.
    pub async fn send_chain(
        &self,
        recs: &[&Record],
        deadline: Instant,
    ) -> Vec<Result<(), SendError>> {
        match self {
            ClusterWriter::Kafka(k) => k.send_chain(recs, deadline).await,
            ClusterWriter::Rocketmq(r) => r.send_chain(recs, deadline).await,
        }
    }

    /// Whether both handles are the same producers.
    pub fn same(&self, other: &ClusterWriter) -> bool {
        match (self, other) {
            (ClusterWriter::Kafka(a), ClusterWriter::Kafka(b)) => Arc::ptr_eq(a, b),
            (ClusterWriter::Rocketmq(a), ClusterWriter::Rocketmq(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        match self {
            ClusterWriter::Kafka(k) => k.name(),
            ClusterWriter::Rocketmq(r) => r.name(),
        }
    }

    /// This cluster's broker series.
    pub fn metrics(&self) -> &ClusterMetrics {
        match self {
            ClusterWriter::Kafka(k) => k.metrics(),
            ClusterWriter::Rocketmq(r) => r.metrics(),
        }
    }

    /// Backend label for status and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            ClusterWriter::Kafka(_) => "kafka",
            ClusterWriter::Rocketmq(_) => "rocketmq",
        }
    }

    /// Flushes outstanding sends, bounded.
    pub async fn flush(&self, timeout: std::time::Duration) {
        match self {
            ClusterWriter::Kafka(k) => k.flush(timeout).await,
            ClusterWriter::Rocketmq(r) => r.flush(timeout).await,
        }
    }
}

/// Writers by cluster name.
#[derive(Clone, Default)]
pub struct Writers {
    /// Cluster name -> writer.
    pub clusters: HashMap<String, ClusterWriter>,
}

impl Writers {
    /// The writer of `cluster`, if one exists.
    pub fn get(&self, cluster: &str) -> Option<&ClusterWriter> {
        self.clusters.get(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_rules() {
        assert_eq!(partition_for(5, 0, 4), 1, "explicit reduced modulo n");
        assert_eq!(partition_for(3, 99, 4), 3);
        assert_eq!(partition_for(-1, -6, 4), 2, "negative hashId uses |hashId|");
        assert_eq!(partition_for(-1, i64::MIN, 4), 0);
        assert_eq!(partition_for(-1, 7, 4), 3);
        let mut seen = [false; 4];
        for _ in 0..400 {
            seen[partition_for(-2, 7, 4) as usize] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "random spreads over all partitions"
        );
        assert_eq!(partition_for(-1, 5, 0), 0);
    }
}
