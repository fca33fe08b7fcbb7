//! Normal sends: validate -> admit -> delay gate -> route -> writer (forwarding.md §1).

pub mod admit;
pub mod limit;
pub mod route;
pub mod snapshot;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::time::Instant;

use crate::metrics::{labels, Metrics, SendOutcome};
use crate::proto::{Code, Message};
use crate::writer::{BatchPolicy, ClusterWriter, Record, SendError};
use limit::Decision;
use snapshot::Snapshot;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The forwarding step after the server: admission, the rate limiter's gate with its delayed
/// retries, and the writer, counting what happened in `metrics`.
pub struct Forwarder {
    metrics: Arc<Metrics>,
    /// Delayed limiter retries pending (bounded by `limiterFailureRetryQueueSize`).
    limiter_retries: AtomicUsize,
}

/// Property whose presence lets a write reach a delay topic.
pub const FROM_CHRONOS: &str = "from_chronos";

/// A message that passed steps 3-7, ready for the writer.
struct Admitted<'a> {
    writer: &'a ClusterWriter,
    record: Record,
    retry_setting: i64,
}

/// Runs validation, admission, the delay gate and cluster choice for one message.
fn admit_one<'a>(snap: &'a Snapshot, m: Message) -> Result<Admitted<'a>, Code> {
    let topic = m.topic.as_deref().unwrap_or("");
    let route = snap.topics.admit(topic);
    let size_limit = route
        .as_ref()
        .map_or(admit::DEFAULT_SIZE_LIMIT, |r| r.size_limit);
    if let Err(why) = validate::validate(&m, size_limit, &snap.proxy.carrera.inner_topic_prefix) {
        tracing::debug!(topic, %why, "message rejected");
        return Err(Code::Illegal);
    }
    let route = route.ok_or(Code::NotWhitelisted)?;
    if route.delay_topic && !m.has_property(FROM_CHRONOS) {
        return Err(Code::TopicIsDelay);
    }
    let cluster = &route.clusters[route::choose_index(&m, route.clusters.len())];
    let writer = snap.writer(cluster).ok_or(Code::NoProducer)?;
    let body = m.payload().cloned().unwrap_or_default();
    Ok(Admitted {
        writer,
        retry_setting: route.limiter_failure_retry_interval,
        record: Record {
            topic: route.name.clone(),
            key: m.key,
            body,
            tags: m.tags,
            properties: m.properties,
            partition_id: m.partition_id,
            hash_id: m.hash_id,
            opts: crate::writer::SendOpts {
                strong_order: route.strong_order,
                auto_batch: BatchPolicy::from_config(&snap.proxy.carrera),
                topic_auto_batch: route.auto_batch,
            },
        },
    })
}

fn count_limit(metrics: &Metrics, topic: &str, d: Decision, result: &'static str) {
    // Only decisions other than plain admission are counted, so the label is made only then.
    let add = |scope: &'static str, result: &'static str| {
        let labels = labels::Limit {
            scope,
            topic: topic.into(),
            result,
        };
        metrics.rate_limit.get_or_create(&labels).inc();
    };
    match d {
        Decision::Warned { topic: t, node: n } => {
            if t {
                add("topic", "warn");
            }
            if n {
                add("node", "warn");
            }
        }
        Decision::RefusedTopic | Decision::TooLarge => add("topic", result),
        Decision::RefusedNode => add("node", result),
        Decision::Admitted => {}
    }
}

fn outcome_of(r: Result<(), SendError>) -> Outcome {
    match r {
        Ok(()) => Code::Ok.into(),
        Err(e) => Outcome {
            code: e.code(),
            cause: Some(e),
        },
    }
}

/// A send's answer and, when a writer failure decided it, that failure: the wire message of a
/// code is fixed (wire.md §6), so the failure log line is where the cause is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The code answered.
    pub code: Code,
    /// The writer failure behind `code`, if one decided it.
    pub cause: Option<SendError>,
}

impl From<Code> for Outcome {
    fn from(code: Code) -> Outcome {
        Outcome { code, cause: None }
    }
}

impl Forwarder {
    /// A forwarder counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            metrics,
            limiter_retries: AtomicUsize::new(0),
        })
    }

    /// Step 8: the rate limiter, with one delayed retry of a refusal (forwarding.md §10).
    pub async fn limit_gate(
        &self,
        snap: &Snapshot,
        wants: &[(&str, u32)],
        retry_setting: i64,
        deadline: Instant,
    ) -> Result<(), Code> {
        let Some(l) = &snap.limiter else {
            return Ok(());
        };
        let topic = wants.first().map_or("", |w| w.0);
        let d = l.admit_many(wants);
        count_limit(&self.metrics, topic, d, "refused");
        if d.admitted() {
            return Ok(());
        }
        if d == Decision::TooLarge {
            return Err(Code::RateLimited);
        }
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i64;
        let Some(interval) = limit::retry_interval_ms(retry_setting, budget) else {
            return Err(Code::RateLimited);
        };
        let at = Instant::now() + std::time::Duration::from_millis(interval as u64);
        // Never schedule a retry that would end after the deadline: answer 15 now instead.
        if at >= deadline {
            return Err(Code::RateLimited);
        }
        let cap = snap.proxy.carrera.limiter_failure_retry_queue_size.max(0) as usize;
        if self.limiter_retries.fetch_add(1, Ordering::AcqRel) >= cap {
            self.limiter_retries.fetch_sub(1, Ordering::AcqRel);
            return Err(Code::RateLimited);
        }
        count_limit(&self.metrics, topic, d, "retried");
        tokio::time::sleep_until(at).await;
        self.limiter_retries.fetch_sub(1, Ordering::AcqRel);
        let again = l.admit_many(wants);
        if again.admitted() {
            count_limit(&self.metrics, topic, again, "");
            Ok(())
        } else {
            count_limit(&self.metrics, topic, again, "retry_refused");
            Err(Code::RateLimited)
        }
    }

    /// Records one broker attempt (or pipelined chain) in the broker metrics.
    fn observe_broker(
        &self,
        writer: &ClusterWriter,
        started: Instant,
        results: &[Result<(), SendError>],
    ) {
        let m = writer.metrics();
        m.attempt(started.elapsed().as_secs_f64());
        for r in results {
            m.sent(match r {
                Ok(()) => SendOutcome::Ok,
                Err(SendError::Timeout) => SendOutcome::Timeout,
                Err(SendError::Retriable(_)) => SendOutcome::Retriable,
                Err(_) => SendOutcome::Error,
            });
        }
    }

    /// Sends one record through `writer`, answering by `deadline`, with metrics.
    pub async fn send_record(
        &self,
        writer: &ClusterWriter,
        rec: &Record,
        deadline: Instant,
    ) -> Result<(), SendError> {
        let started = Instant::now();
        let r = match tokio::time::timeout_at(deadline, writer.send(rec, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout),
        };
        self.observe_broker(writer, started, std::slice::from_ref(&r));
        r
    }

    /// `sendSync` / `sendAsync` after the drain and heartbeat checks.
    pub async fn send_one(
        &self,
        snap: &Snapshot,
        m: Option<Message>,
        deadline: Instant,
    ) -> Outcome {
        let Some(m) = m else {
            return Code::Illegal.into();
        };
        let a = match admit_one(snap, m) {
            Ok(a) => a,
            Err(code) => return code.into(),
        };
        let topic = a.record.topic.clone();
        if let Err(code) = self
            .limit_gate(snap, &[(&topic, 1)], a.retry_setting, deadline)
            .await
        {
            self.metrics.message(topic, code.as_i32());
            return code.into();
        }
        let out = outcome_of(self.send_record(a.writer, &a.record, deadline).await);
        self.metrics.message(topic, out.code.as_i32());
        out
    }

    /// `sendBatchSync` (forwarding.md §5).
    pub async fn send_batch(
        &self,
        snap: &Snapshot,
        ms: Vec<Message>,
        deadline: Instant,
    ) -> Outcome {
        self.metrics.rpc_batch_size.observe(ms.len() as f64);
        if ms.is_empty() {
            return Code::Ok.into();
        }
        let mut admitted = Vec::with_capacity(ms.len());
        for m in ms {
            match admit_one(snap, m) {
                Ok(a) => admitted.push(a),
                Err(code) => return code.into(),
            }
        }
        // One permit per message: n_t per topic, their sum at node level; one refusal refuses all.
        let mut wants: Vec<(&str, u32)> = Vec::new();
        for a in &admitted {
            match wants.iter_mut().find(|(t, _)| *t == &*a.record.topic) {
                Some(w) => w.1 += 1,
                None => wants.push((&a.record.topic, 1)),
            }
        }
        let retry_setting = admitted[0].retry_setting;
        if let Err(code) = self.limit_gate(snap, &wants, retry_setting, deadline).await {
            return code.into();
        }
        // One chain per cluster in batch order: the producer keeps per-partition order itself.
        let mut chains: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, a) in admitted.iter().enumerate() {
            chains
                .entry(a.writer as *const ClusterWriter as usize)
                .or_default()
                .push(i);
        }
        let sends = chains.values().map(|idx| {
            let writer = admitted[idx[0]].writer;
            let recs: Vec<&Record> = idx.iter().map(|&i| &admitted[i].record).collect();
            async move {
                let started = Instant::now();
                let res = writer.send_chain(&recs, deadline).await;
                self.observe_broker(writer, started, &res);
                (idx.clone(), res)
            }
        });
        let results = match tokio::time::timeout_at(deadline, join_all(sends)).await {
            Ok(r) => r,
            Err(_) => return Code::Timeout.into(),
        };
        let mut first_failure: Option<(usize, SendError)> = None;
        let mut stored = 0usize;
        for (idx, res) in results {
            for (i, r) in idx.into_iter().zip(res) {
                let code = r.as_ref().map_or_else(|e| e.code(), |_| Code::Ok);
                let topic = admitted[i].record.topic.clone();
                self.metrics.message(topic, code.as_i32());
                match r {
                    Ok(()) => stored += 1,
                    Err(e) if first_failure.as_ref().is_none_or(|(j, _)| i < *j) => {
                        first_failure = Some((i, e))
                    }
                    Err(_) => {}
                }
            }
        }
        match first_failure {
            None => Code::Ok.into(),
            Some((i, e)) => {
                if stored > 0 {
                    self.metrics.batch_partial.inc();
                    tracing::debug!(stored, index = i, "batch partially stored");
                }
                outcome_of(Err(e))
            }
        }
    }
}
