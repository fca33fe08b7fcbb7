//! RocketMQ writer on rocketmq-client-rust: pproxy chooses every queue itself (forwarding.md
//! §7.1) and sends with `send_to_queue` / `send_batch_to_queue`, so the library never falls back
//! to the default-topic route or retries on its own.

mod client;
mod instances;
pub mod lane;
pub mod message;
pub mod queues;
mod reconnect;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{ClientError, DefaultMQProducer};
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::result::SendStatus;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::error::rocketmq_cause;
use super::retry::RetryPolicy;
use super::{BatchPolicy, Record, SendError, SendOpts};
use crate::config::model::RocketmqConfiguration;
use crate::config::settings::ForwardingSettings;
use crate::lifecycle::Tasks;
use crate::metrics::ClusterMetrics;
use instances::Instances;
use lane::{Lane, LaneStats};
use queues::{Routes, TopicQueues};

/// A boxed send future.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// The two broker calls a lane makes; the producer implements them (a fake in unit tests).
pub trait Sender: Send + Sync {
    /// One message to one queue (request code 310).
    fn send_one(&self, msg: Message, mq: MessageQueue, deadline: Instant) -> SendFuture<'_>;
    /// A single-topic, single-queue batch (request code 320).
    fn send_batch(&self, msgs: Vec<Message>, mq: MessageQueue, deadline: Instant)
        -> SendFuture<'_>;
}

/// Milliseconds left until `deadline`, at least 1.
fn remaining_ms(deadline: Instant) -> u64 {
    (deadline
        .saturating_duration_since(Instant::now())
        .as_millis() as u64)
        .max(1)
}

/// One started producer instance.
struct Producer {
    inner: DefaultMQProducer,
    routes: Arc<Routes>,
    fault_backoff: Duration,
    /// Its run of connection failures (reconnect.rs).
    streak: reconnect::Streak,
}

impl Producer {
    /// Maps a library error, and refreshes routes or marks the broker where the spec says so.
    fn failed(&self, e: &ClientError, mq: &MessageQueue) -> SendError {
        let err = SendError::from_rocketmq(e);
        if err.is_connection() {
            self.streak.failure(Instant::now());
        } else {
            // The broker answered (or timed out): it is reachable.
            self.streak.success();
        }
        if matches!(e.broker_response_code(), Some(16 | 17)) || err.is_connection() {
            self.routes.invalidate(mq.topic().as_str());
        }
        if matches!(err, SendError::Retriable(_) | SendError::Timeout) {
            self.routes
                .mark_fault(mq.broker_name().as_str(), self.fault_backoff);
        }
        err
    }
}

/// Logs, sampled, a put the broker stored without the flush or replication it is configured
/// for: the answer stays 0 (forwarding.md §4.3), but whoever runs SYNC_FLUSH or a slave for zero
/// loss must be able to see that a message did not get it.
fn note_stored(status: &SendStatus, mq: &MessageQueue) {
    static SAMPLER: std::sync::LazyLock<crate::logging::FailureSampler> =
        std::sync::LazyLock::new(Default::default);
    let code = match status {
        SendStatus::SendOk => return,
        SendStatus::FlushDiskTimeout => 10,
        SendStatus::SlaveNotAvailable => 11,
        SendStatus::FlushSlaveTimeout => 12,
    };
    if let Some(suppressed) = SAMPLER.admit(code, 1) {
        tracing::warn!(
            broker = %mq.broker_name(),
            topic = %mq.topic(),
            cause = rocketmq_cause(code),
            suppressed,
            "message stored without the durability the broker is configured for; answered 0"
        );
    }
}

impl Sender for Producer {
    fn send_one(&self, msg: Message, mq: MessageQueue, deadline: Instant) -> SendFuture<'_> {
        Box::pin(async move {
            let call =
                self.inner
                    .send_to_queue_with_timeout(msg, mq.clone(), remaining_ms(deadline));
            match tokio::time::timeout_at(deadline, call).await {
                Err(_) => Err(SendError::Timeout),
                // FLUSH_DISK_TIMEOUT and friends: stored, so 0 (forwarding.md §4.3).
                Ok(Ok(r)) => {
                    self.streak.success();
                    if let Some(r) = r {
                        note_stored(&r.send_status, &mq);
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(self.failed(&e, &mq)),
            }
        })
    }

    fn send_batch(
        &self,
        msgs: Vec<Message>,
        mq: MessageQueue,
        deadline: Instant,
    ) -> SendFuture<'_> {
        Box::pin(async move {
            let call = self.inner.send_batch_to_queue_with_timeout(
                msgs,
                mq.clone(),
                remaining_ms(deadline),
            );
            match tokio::time::timeout_at(deadline, call).await {
                Err(_) => Err(SendError::Timeout),
                Ok(Ok(r)) => {
                    self.streak.success();
                    note_stored(&r.send_status, &mq);
                    Ok(())
                }
                Ok(Err(e)) => Err(self.failed(&e, &mq)),
            }
        })
    }
}

/// What one send request carries: one message, or a packed batch of one chain.
struct Unit<'a> {
    topic: &'a str,
    msgs: Vec<Message>,
    body_len: usize,
    partition_id: i32,
    hash_id: i64,
    strong_order: bool,
    /// The first attempt's queue when already chosen (batch groups).
    first: Option<MessageQueue>,
    /// Lane bounds when the first attempt goes through an auto-batch lane.
    lane: Option<BatchPolicy>,
}

/// One RocketMQ cluster: producer instances (started on first use), routes and lanes.
pub struct RocketmqCluster {
    name: String,
    conf: RocketmqConfiguration,
    instances: usize,
    retry: RetryPolicy,
    fault_backoff: Duration,
    start_millis: i64,
    producers: OnceCell<Arc<Instances>>,
    routes: Arc<Routes>,
    lanes: Mutex<HashMap<MessageQueue, Arc<Lane>>>,
    lane_stats: Arc<LaneStats>,
    sticky: Mutex<HashMap<String, MessageQueue>>,
    /// Route refreshes and lane dispatchers run as tasks of the process.
    tasks: Tasks,
    /// `forwarding.rocketmqCoalesce`: single messages of any topic share busy lanes.
    coalesce: bool,
}

/// Bounds of a busy lane's batch for topics without auto-batch (issue 16): the broker accepts
/// 4 MiB requests, and a quarter MiB of bodies already amortises a request over dozens of small
/// messages while keeping one request's latency low.
pub const COALESCE: BatchPolicy = BatchPolicy {
    max_bytes: 256 << 10,
    threshold: 64 << 10,
    max_messages: 32,
};

/// The lane a single message's first attempt goes through, if any: an auto-batch topic's
/// small bodies use the auto-batch bounds (forwarding.md §8); with coalescing on, every other
/// body below `COALESCE.threshold` uses `COALESCE`. Either way an idle lane sends at once.
fn lane_policy(opts: &SendOpts, body_len: usize, coalesce: bool) -> Option<BatchPolicy> {
    if let (true, Some(p)) = (opts.topic_auto_batch, opts.auto_batch) {
        return (body_len < p.threshold).then_some(p);
    }
    (coalesce && body_len < COALESCE.threshold).then_some(COALESCE)
}

impl RocketmqCluster {
    /// A cluster writer; producers start on the first send (or warm-up).
    pub fn new(
        name: &str,
        conf: &RocketmqConfiguration,
        fwd: &ForwardingSettings,
        instances: usize,
        tasks: Tasks,
        metrics: ClusterMetrics,
    ) -> RocketmqCluster {
        RocketmqCluster {
            name: name.into(),
            conf: conf.clone(),
            instances: instances.max(1),
            retry: RetryPolicy::from_settings(fwd),
            fault_backoff: fwd.broker_fault_backoff_ms,
            start_millis: chrono::Utc::now().timestamp_millis(),
            producers: OnceCell::new(),
            routes: Arc::new(Routes::default()),
            lanes: Mutex::new(HashMap::new()),
            lane_stats: Arc::new(LaneStats::new(metrics)),
            sticky: Mutex::new(HashMap::new()),
            tasks,
            coalesce: fwd.rocketmq_coalesce,
        }
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This cluster's broker series.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.lane_stats.metrics
    }

    /// Lane and route figures for `/status`.
    pub fn status_json(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.lane_stats;
        serde_json::json!({
            "started": self.producers.initialized(),
            "laneRequests": s.requests.load(Relaxed),
            "laneBatchRequests": s.batch_requests.load(Relaxed),
            "laneBatchedMessages": s.batched_messages.load(Relaxed),
            "producerReplacements": self.producers.get().map_or(0, |p| p.replaced()),
        })
    }

    /// The started producers; a failed start is retried by the next send.
    async fn producers(&self, deadline: Instant) -> Result<&Arc<Instances>, SendError> {
        let start = self.producers.get_or_try_init(|| async {
            let started = Instances::start(
                &self.name,
                &self.conf,
                self.start_millis,
                self.instances,
                self.routes.clone(),
                self.fault_backoff,
                self.tasks.clone(),
            )
            .await
            .map_err(|e| {
                tracing::warn!(cluster = %self.name, error = %e, "rocketmq producer start failed");
                SendError::Retriable(format!("producer start: {e}"))
            })?;
            tracing::info!(cluster = %self.name, instances = started.len(), "rocketmq producers started");
            Ok(Arc::new(started))
        });
        match tokio::time::timeout_at(deadline, start).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// The publish queues of `topic`, fetched when missing or invalidated and refreshed in the
    /// background every `pollNameServerInterval`.
    async fn queues(
        &self,
        producers: &Instances,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicQueues>, SendError> {
        let max_age = Duration::from_millis(self.conf.poll_name_server_interval.max(1) as u64);
        if let Some(q) = self.routes.get(topic).filter(|q| !q.is_stale()) {
            if q.claim_refresh(max_age) {
                let (p, routes, t) = (producers.first(), self.routes.clone(), topic.to_string());
                let metrics = self.metrics().clone();
                let until = Instant::now() + Duration::from_secs(10);
                self.tasks.spawn_until_shutdown(async move {
                    let fetched = fetch(&p.inner, &t, until).await;
                    metrics.route_refresh(matches!(&fetched, Ok(l) if !l.is_empty()));
                    match fetched {
                        Ok(list) if !list.is_empty() => {
                            routes.put(&t, list);
                        }
                        Ok(_) | Err(_) => {
                            if let Some(q) = routes.get(&t) {
                                q.done_refresh();
                            }
                        }
                    }
                });
            }
            return Ok(q);
        }
        let known = self.routes.get(topic).is_some();
        let fetched = fetch(&producers.first().inner, topic, deadline).await;
        self.metrics()
            .route_refresh(matches!(&fetched, Ok(l) if !l.is_empty()));
        let fetched = fetched.and_then(|list| {
            if list.is_empty() {
                Err(SendError::TopicNotExist(format!(
                    "no writable queue for {topic}"
                )))
            } else {
                Ok(list)
            }
        });
        match fetched {
            Ok(list) => Ok(self.routes.put(topic, list)),
            // A topic that had a route and lost it is an outage (its brokers are down and
            // unregistered), not a missing topic: retried, then 10 or 12 (issue #7).
            Err(SendError::TopicNotExist(why)) if known => {
                Err(SendError::Retriable(format!("route lost: {why}")))
            }
            Err(e) => Err(e),
        }
    }

    fn lane(&self, mq: &MessageQueue) -> Arc<Lane> {
        match self.lanes.lock() {
            Ok(mut l) => l
                .entry(mq.clone())
                .or_insert_with(|| {
                    Lane::new(mq.clone(), self.lane_stats.clone(), self.tasks.clone())
                })
                .clone(),
            // A poisoned map only loses batching, never a message.
            Err(_) => Lane::new(mq.clone(), self.lane_stats.clone(), self.tasks.clone()),
        }
    }

    /// The sticky lane queue of random messages of `topic`. It moves on whenever a submission
    /// finds its lane idle (that submission dispatches), so under load random traffic packs
    /// into busy lanes (`rotate_sticky`).
    fn sticky_queue(&self, q: &TopicQueues, topic: &str) -> Option<MessageQueue> {
        let mut s = self.sticky.lock().ok()?;
        let current = s.get(topic).filter(|m| q.list.contains(m)).cloned();
        let chosen = current.or_else(|| self.routes.pick(q, -2, 0, false, None))?;
        s.insert(topic.to_string(), chosen.clone());
        Some(chosen)
    }

    fn rotate_sticky(&self, topic: &str, q: &TopicQueues, used: &MessageQueue) {
        if let Ok(mut s) = self.sticky.lock() {
            if s.get(topic) == Some(used) {
                if let Some(m) = self.routes.pick(q, -2, 0, false, None) {
                    s.insert(topic.to_string(), m);
                }
            }
        }
    }

    /// Sends one unit with the retry policy of forwarding.md §4.2.
    async fn send_unit(&self, unit: Unit<'_>, deadline: Instant) -> Result<(), SendError> {
        let producers = self.producers(deadline).await?;
        let mut previous: Option<MessageQueue> = None;
        let mut attempt = 1u32;
        loop {
            let q = self.queues(producers, unit.topic, deadline).await;
            let result = match q {
                Err(e) => Err(e),
                Ok(q) => {
                    let mq = match (&previous, &unit.first) {
                        (None, Some(first)) if q.list.contains(first) => Some(first.clone()),
                        // A random message's first attempt through a lane uses the sticky queue.
                        (None, _) if unit.lane.is_some() && unit.partition_id < -1 => {
                            self.sticky_queue(&q, unit.topic)
                        }
                        _ => self.routes.pick(
                            &q,
                            unit.partition_id,
                            unit.hash_id,
                            unit.strong_order,
                            previous.as_ref(),
                        ),
                    };
                    match mq {
                        None => Err(SendError::TopicNotExist(unit.topic.into())),
                        Some(mq) => {
                            let p = producers.for_queue(&mq);
                            let r = match (attempt, unit.lane, unit.msgs.len()) {
                                (1, Some(policy), 1) => {
                                    let lane = self.lane(&mq);
                                    if unit.partition_id < -1 && !lane.is_busy() {
                                        self.rotate_sticky(unit.topic, &q, &mq);
                                    }
                                    lane.submit(
                                        p.clone(),
                                        unit.msgs[0].clone(),
                                        unit.body_len,
                                        policy,
                                        deadline,
                                    )
                                    .await
                                }
                                (_, _, 1) => {
                                    p.send_one(unit.msgs[0].clone(), mq.clone(), deadline).await
                                }
                                _ => p.send_batch(unit.msgs.clone(), mq.clone(), deadline).await,
                            };
                            if matches!(&r, Err(e) if e.is_connection()) {
                                producers.connection_failed(&p, &mq);
                            }
                            previous = Some(mq);
                            r
                        }
                    }
                }
            };
            let Err(e) = result else {
                return Ok(());
            };
            attempt += 1;
            match self.retry.next_attempt(&e, attempt, deadline) {
                Some(at) => {
                    self.metrics().retry(e.is_connection());
                    tokio::time::sleep_until(at).await
                }
                None => return Err(e),
            }
        }
    }

    /// Sends one record (sendSync, sendAsync, delay fires).
    pub async fn send(&self, rec: &Record, deadline: Instant) -> Result<(), SendError> {
        let msg = message::build(rec)?;
        let lane = lane_policy(&rec.opts, rec.body.len(), self.coalesce);
        self.send_unit(
            Unit {
                topic: &rec.topic,
                msgs: vec![msg],
                body_len: rec.body.len(),
                partition_id: rec.partition_id,
                hash_id: rec.hash_id,
                strong_order: rec.opts.strong_order,
                first: None,
                lane,
            },
            deadline,
        )
        .await
    }

    /// sendBatchSync (forwarding.md §5): chains per (topic, queue) and one group per topic for
    /// random messages, all concurrently; inside a chain each request waits for the previous
    /// one, and with auto-batch on consecutive messages are packed into batch requests.
    pub async fn send_chain(
        &self,
        recs: &[&Record],
        deadline: Instant,
    ) -> Vec<Result<(), SendError>> {
        let mut out: Vec<Result<(), SendError>> = vec![Err(SendError::Timeout); recs.len()];
        let producers = match self.producers(deadline).await {
            Ok(p) => p,
            Err(e) => return vec![Err(e); recs.len()],
        };
        // Group indices by (topic, queue).
        let mut groups: Vec<(MessageQueue, Vec<usize>)> = Vec::new();
        let mut random_queue: HashMap<&str, MessageQueue> = HashMap::new();
        for (i, r) in recs.iter().enumerate() {
            let q = match self.queues(producers, &r.topic, deadline).await {
                Ok(q) => q,
                Err(e) => {
                    out[i] = Err(e);
                    continue;
                }
            };
            let mq = if r.partition_id < -1 {
                match random_queue.get(&*r.topic) {
                    Some(m) => Some(m.clone()),
                    None => {
                        let m = self.routes.pick(&q, -2, 0, false, None);
                        if let Some(m) = &m {
                            random_queue.insert(&r.topic, m.clone());
                        }
                        m
                    }
                }
            } else {
                self.routes.pick(&q, r.partition_id, r.hash_id, false, None)
            };
            let Some(mq) = mq else {
                out[i] = Err(SendError::TopicNotExist(r.topic.to_string()));
                continue;
            };
            match groups.iter_mut().find(|(m, _)| *m == mq) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((mq, vec![i])),
            }
        }
        let max_bytes = self.conf.max_message_size.max(1) as usize;
        let sends = groups.into_iter().map(|(mq, idx)| async move {
            let pack = recs[idx[0]]
                .opts
                .auto_batch
                .map_or(1, |p| p.max_messages.max(1));
            let mut results: Vec<(usize, Result<(), SendError>)> = Vec::with_capacity(idx.len());
            let mut k = 0;
            let mut failed: Option<SendError> = None;
            while k < idx.len() {
                // One request: up to `pack` messages within maxMessageSize encoded bytes.
                let mut end = k + 1;
                let mut size = message::batch_size(recs[idx[k]]);
                while end < idx.len() && end - k < pack {
                    let s = message::batch_size(recs[idx[end]]);
                    if size + s > max_bytes {
                        break;
                    }
                    size += s;
                    end += 1;
                }
                let chunk = &idx[k..end];
                k = end;
                if let Some(e) = &failed {
                    // Nothing after a failure in a chain is submitted (forwarding.md §5.6).
                    results.extend(chunk.iter().map(|&i| (i, Err(e.clone()))));
                    continue;
                }
                let mut msgs = Vec::with_capacity(chunk.len());
                let mut built = Ok(());
                for &i in chunk {
                    match message::build(recs[i]) {
                        Ok(m) => msgs.push(m),
                        Err(e) => {
                            built = Err(e);
                            break;
                        }
                    }
                }
                let r = match built {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let head = recs[chunk[0]];
                        self.send_unit(
                            Unit {
                                topic: &head.topic,
                                msgs,
                                body_len: 0,
                                partition_id: head.partition_id,
                                hash_id: head.hash_id,
                                strong_order: head.opts.strong_order,
                                first: Some(mq.clone()),
                                lane: None,
                            },
                            deadline,
                        )
                        .await
                    }
                };
                if let Err(e) = &r {
                    failed = Some(e.clone());
                }
                results.extend(chunk.iter().map(|&i| (i, r.clone())));
            }
            results
        });
        for group in futures::future::join_all(sends).await {
            for (i, r) in group {
                out[i] = r;
            }
        }
        out
    }

    /// Waits (bounded) until no lane has a request in flight.
    pub async fn flush(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let busy = self
                .lanes
                .lock()
                .map(|l| l.values().any(|lane| lane.is_busy()))
                .unwrap_or(false);
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts producers and fetches routes of `topics` (warm-up, forwarding.md §7.5).
    pub async fn warm_up(&self, topics: &[String], deadline: Instant) {
        let Ok(producers) = self.producers(deadline).await else {
            return;
        };
        for t in topics {
            if let Err(e) = self.queues(producers, t, deadline).await {
                tracing::warn!(cluster = %self.name, topic = %t, error = %e, "route warm-up failed");
            }
        }
    }
}

/// Fetches the publish queue list of `topic` from the name server (no default-topic fallback).
async fn fetch(
    p: &DefaultMQProducer,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<MessageQueue>, SendError> {
    let Some(inner) = p.default_mq_producer_impl() else {
        return Err(SendError::Retriable("producer not started".into()));
    };
    let topic = topic.to_string().into();
    let call = inner.fetch_publish_message_queues(&topic);
    match tokio::time::timeout_at(deadline, call).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Ok(list)) => Ok(list),
        Ok(Err(e)) => {
            tracing::debug!(%topic, error = ?e, "route lookup failed");
            Err(SendError::from_rocketmq_route(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(auto_batch: Option<BatchPolicy>, topic_auto_batch: bool) -> SendOpts {
        SendOpts {
            strong_order: false,
            auto_batch,
            topic_auto_batch,
        }
    }

    #[test]
    fn every_small_message_gets_a_lane_and_auto_batch_topics_keep_their_bounds() {
        let ab = BatchPolicy {
            max_bytes: 4096,
            threshold: 1024,
            max_messages: 32,
        };
        assert_eq!(lane_policy(&opts(Some(ab), true), 100, true), Some(ab));
        // An auto-batch topic's large body is sent singly (forwarding.md §8), coalescing or not.
        assert_eq!(lane_policy(&opts(Some(ab), true), 2000, true), None);
        // Ordinary topics coalesce below COALESCE.threshold, unless turned off.
        assert_eq!(
            lane_policy(&opts(Some(ab), false), 2000, true),
            Some(COALESCE)
        );
        assert_eq!(lane_policy(&opts(None, false), 100, true), Some(COALESCE));
        assert_eq!(lane_policy(&opts(None, false), 64 << 10, true), None);
        assert_eq!(lane_policy(&opts(None, false), 100, false), None);
        assert_eq!(lane_policy(&opts(None, true), 100, false), None);
    }
}
