//! Kafka writer on rdkafka: pipelined sends, partition rules, headers, deadline-bounded retries.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::RwLock;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use tokio::time::Instant;

use super::embedded::EmbeddedHandle;
use super::{partition_for, Record, SendError};
use crate::config::model::KafkaConfiguration;
use crate::config::settings::ForwardingSettings;
use crate::metrics::ClusterMetrics;

/// Backoff between submissions while librdkafka's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Pause between metadata attempts while the cluster is unreachable.
const METADATA_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How partition counts are cached.
struct PartitionCache {
    counts: RwLock<HashMap<String, (u32, Instant)>>,
    max_age: Duration,
    fetch_timeout: Duration,
}

/// One Kafka cluster: its producer instances and metadata cache.
pub struct KafkaCluster {
    name: String,
    producers: Vec<FutureProducer>,
    cache: PartitionCache,
    embedded: Option<EmbeddedHandle>,
    metrics: ClusterMetrics,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The librdkafka properties for one producer instance (forwarding.md §6).
pub fn producer_config(
    cluster: &str,
    conf: &KafkaConfiguration,
    fwd: &ForwardingSettings,
    overrides: &BTreeMap<String, BTreeMap<String, String>>,
    start_millis: i64,
    instance: usize,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    let acks = conf.acks.trim();
    let idempotent = acks == "all" || acks == "-1";
    c.set("bootstrap.servers", conf.bootstrap_servers.join(","))
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("batch.size", conf.batch_size.to_string())
        .set("retry.backoff.ms", conf.retry_backoff.to_string())
        .set("metadata.max.age.ms", conf.metadata_max_age.to_string())
        .set("request.timeout.ms", conf.ack_timeout.to_string())
        .set(
            "queue.buffering.max.kbytes",
            ((conf.buffer_memory + 1023) / 1024).to_string(),
        )
        .set(
            "client.id",
            format!("{}-{start_millis}-{}{instance}", conf.client_id, hostname()),
        )
        .set("linger.ms", fwd.kafka_linger_ms.as_millis().to_string())
        .set(
            "message.timeout.ms",
            fwd.kafka_message_timeout_ms.as_millis().to_string(),
        )
        .set("compression.type", "none");
    if !idempotent {
        tracing::warn!(
            cluster,
            acks,
            "idempotence off: one request in flight per connection"
        );
        c.set("retries", conf.retries.to_string())
            .set("max.in.flight.requests.per.connection", "1");
    }
    for scope in ["*", cluster] {
        if let Some(o) = overrides.get(scope) {
            for (k, v) in o {
                c.set(k, v);
            }
        }
    }
    c
}

impl KafkaCluster {
    /// Creates `instances` producers for one cluster.
    pub fn new(
        name: &str,
        conf: &KafkaConfiguration,
        fwd: &ForwardingSettings,
        overrides: &BTreeMap<String, BTreeMap<String, String>>,
        instances: usize,
        embedded: Option<EmbeddedHandle>,
        metrics: ClusterMetrics,
    ) -> Result<Self, KafkaError> {
        let start = chrono::Utc::now().timestamp_millis();
        let producers = (0..instances.max(1))
            .map(|i| producer_config(name, conf, fwd, overrides, start, i).create())
            .collect::<Result<Vec<FutureProducer>, _>>()?;
        Ok(KafkaCluster {
            name: name.into(),
            producers,
            cache: PartitionCache {
                counts: RwLock::new(HashMap::new()),
                max_age: Duration::from_millis(conf.metadata_max_age as u64),
                fetch_timeout: Duration::from_millis(conf.metadata_fetch_timeout as u64),
            },
            embedded,
            metrics,
        })
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This cluster's broker series.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// Number of producer instances.
    pub fn instances(&self) -> usize {
        self.producers.len()
    }

    fn cached_count(&self, topic: &str) -> Option<u32> {
        let counts = self.cache.counts.read().ok()?;
        let (n, at) = counts.get(topic)?;
        (at.elapsed() < self.cache.max_age).then_some(*n)
    }

    fn forget(&self, topic: &str) {
        if let Ok(mut c) = self.cache.counts.write() {
            c.remove(topic);
        }
    }

    /// The topic's partition count: cached, or fetched. Transient metadata failures (broker
    /// unreachable) are retried until `min(deadline, metadataFetchTimeout)`; then the outcome is
    /// unknown (12). A topic the broker reports as missing is final (14).
    pub async fn partition_count(&self, topic: &str, deadline: Instant) -> Result<u32, SendError> {
        if let Some(n) = self.cached_count(topic) {
            return Ok(n);
        }
        if let Some(e) = &self.embedded {
            e.ensure_topic(topic).await;
        }
        let bound = deadline.min(Instant::now() + self.cache.fetch_timeout);
        loop {
            let wait = bound.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(SendError::Timeout);
            }
            let fetched = self.fetch_count(topic, wait).await;
            self.metrics.route_refresh(fetched.is_ok());
            match fetched {
                Ok(n) => {
                    if let Ok(mut c) = self.cache.counts.write() {
                        c.insert(topic.to_string(), (n, Instant::now()));
                    }
                    return Ok(n);
                }
                Err(e @ SendError::TopicNotExist(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(topic, error = %e, "metadata fetch failed; retrying");
                    let pause =
                        METADATA_RETRY_PAUSE.min(bound.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn fetch_count(&self, topic: &str, wait: Duration) -> Result<u32, SendError> {
        let producer = self.producers[0].clone();
        let t = topic.to_string();
        // fetch_metadata blocks: keep it off the runtime threads.
        let fetched = tokio::task::spawn_blocking(move || {
            let md = producer.client().fetch_metadata(Some(&t), wait)?;
            Ok::<_, KafkaError>(
                md.topics()
                    .first()
                    .map(|mt| (mt.error(), mt.partitions().len() as u32)),
            )
        })
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
        match fetched {
            Ok(Some((None, n))) if n > 0 => Ok(n),
            Ok(Some((Some(err), _))) => Err(SendError::from_kafka(&KafkaError::MetadataFetch(
                err.into(),
            ))),
            Ok(_) => Err(SendError::TopicNotExist(topic.to_string())),
            Err(e) => Err(SendError::Failed(format!("metadata: {e}"))),
        }
    }

    fn producer_for(&self, topic: &str, partition: u32) -> &FutureProducer {
        let mut h = DefaultHasher::new();
        (topic, partition).hash(&mut h);
        &self.producers[(h.finish() % self.producers.len() as u64) as usize]
    }

    /// Hands one record to librdkafka; retries a full local queue until the deadline.
    async fn submit(
        &self,
        rec: &Record,
        partition: u32,
        deadline: Instant,
    ) -> Result<DeliveryFuture, SendError> {
        let producer = self.producer_for(&rec.topic, partition);
        let mut headers = OwnedHeaders::new_with_capacity(rec.properties.len() + 1);
        if let Some(t) = rec.tags.as_deref().filter(|t| !t.is_empty()) {
            headers = headers.insert(Header {
                key: "TAGS",
                value: Some(t.as_bytes()),
            });
        }
        for (k, v) in &rec.properties {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(&rec.topic)
            .payload(&rec.body[..])
            .partition(partition as i32)
            .headers(headers);
        if let Some(k) = &rec.key {
            record = record.key(k.as_bytes());
        }
        loop {
            match producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((e, back)) => match SendError::from_kafka(&e) {
                    SendError::Retriable(_) => {
                        if Instant::now() + QUEUE_FULL_BACKOFF >= deadline {
                            return Err(SendError::Timeout);
                        }
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                        record = back;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    async fn await_delivery(
        &self,
        topic: &str,
        f: DeliveryFuture,
        deadline: Instant,
    ) -> Result<(), SendError> {
        match tokio::time::timeout_at(deadline, f).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Err(_canceled)) => Err(SendError::Failed("producer closed".into())),
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err((e, _)))) => {
                let err = SendError::from_kafka(&e);
                if matches!(err, SendError::TopicNotExist(_)) {
                    self.forget(topic);
                }
                Err(err)
            }
        }
    }

    /// Sends one record and waits for the broker's acknowledgement or the deadline.
    pub async fn send(&self, rec: &Record, deadline: Instant) -> Result<(), SendError> {
        let n = self.partition_count(&rec.topic, deadline).await?;
        let p = partition_for(rec.partition_id, rec.hash_id, n);
        let f = self.submit(rec, p, deadline).await?;
        self.await_delivery(&rec.topic, f, deadline).await
    }

    /// Submits records in order (the idempotent producer keeps per-partition order across its
    /// own retries), then awaits every acknowledgement. Stops submitting at the first failure.
    pub async fn send_chain(
        &self,
        recs: &[&Record],
        deadline: Instant,
    ) -> Vec<Result<(), SendError>> {
        let mut out: Vec<Result<(), SendError>> = Vec::with_capacity(recs.len());
        let mut pending = Vec::with_capacity(recs.len());
        let mut failed = None;
        for rec in recs {
            if failed.is_some() {
                break;
            }
            let submitted = async {
                let n = self.partition_count(&rec.topic, deadline).await?;
                let p = partition_for(rec.partition_id, rec.hash_id, n);
                self.submit(rec, p, deadline).await
            }
            .await;
            match submitted {
                Ok(f) => pending.push(Some(f)),
                Err(e) => {
                    failed = Some(e);
                    pending.push(None);
                }
            }
        }
        for (rec, f) in recs.iter().zip(pending) {
            match f {
                Some(f) => out.push(self.await_delivery(&rec.topic, f, deadline).await),
                None => out.push(Err(failed.take().unwrap_or(SendError::Timeout))),
            }
        }
        // Records never submitted answer as not stored.
        while out.len() < recs.len() {
            out.push(Err(SendError::Failed("not submitted".into())));
        }
        out
    }

    /// Waits for outstanding deliveries, bounded.
    pub async fn flush(&self, timeout: Duration) {
        for p in &self.producers {
            let p = p.clone();
            let r = tokio::task::spawn_blocking(move || p.flush(timeout)).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(cluster = %self.name, error = %e, "flush incomplete");
            }
        }
    }
}
