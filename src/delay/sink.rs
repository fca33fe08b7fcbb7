//! Fires delay occurrences through the normal writer (delay.md §5.4).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use scheduler::{FireMessage, Outcome, Reason, Sink};
use tokio::time::Instant;

use crate::forward::{route, Forwarder, FROM_CHRONOS};
use crate::live::LiveConfig;
use crate::metrics::labels::TopicResult;
use crate::metrics::Metrics;
use crate::proto::{Code, Message};
use crate::writer::Record;

/// The scheduler's sink: admission re-check, cluster choice by key hash, writer send.
#[derive(Clone)]
pub struct WriterSink {
    /// The configuration in force (topics and writers).
    pub live: Arc<LiveConfig>,
    /// The writer step, with its broker metrics.
    pub forwarder: Arc<Forwarder>,
    /// `pproxy_delay_fired_total`.
    pub metrics: Arc<Metrics>,
    /// Deadline of one fire attempt.
    pub timeout: Duration,
}

/// Codes that dead-letter at once (delay.md §5.5); every other failure is retried.
pub fn is_permanent(code: i32) -> bool {
    matches!(code, 11 | 14 | 18 | 19)
}

/// The scheduler's outcome of a fire that answered `code` and `msg`.
pub fn outcome(code: i32, msg: String) -> Outcome {
    let reason = Reason { code, message: msg };
    match code {
        0 => Outcome::Delivered,
        c if is_permanent(c) => Outcome::Permanent { reason },
        _ => Outcome::Retry { reason },
    }
}

/// The wire code and message of an outcome, as the admin API and the fired marker show them.
pub fn code_and_msg(o: &Outcome) -> (i32, String) {
    match o {
        Outcome::Delivered => (0, Code::Ok.msg().to_string()),
        Outcome::Retry { reason } | Outcome::Permanent { reason } => {
            (reason.code, reason.message.clone())
        }
    }
}

async fn fire(sink: WriterSink, m: FireMessage) -> Outcome {
    let snap = sink.live.snapshot_full();
    let fail = |c: Code| outcome(c.as_i32(), c.msg().to_string());
    let Some(route) = snap.topics.admit(&m.topic) else {
        return fail(Code::NotWhitelisted);
    };
    // Random partition, cluster chosen by the key's hash (partitionId -2 with a key).
    let index = match route.clusters.len() {
        0 | 1 => 0,
        n => {
            let probe = Message {
                key: Some(m.key.clone()),
                partition_id: -2,
                ..Default::default()
            };
            route::choose_index(&probe, n)
        }
    };
    let Some(cluster) = route.clusters.get(index) else {
        return fail(Code::NoProducer);
    };
    let Some(writer) = snap.writer(cluster) else {
        return fail(Code::NoProducer);
    };
    let mut properties: Vec<(String, String)> = m
        .properties
        .into_iter()
        .filter(|(k, _)| k != FROM_CHRONOS)
        .collect();
    properties.push((FROM_CHRONOS.into(), FROM_CHRONOS.into()));
    let rec = Record {
        topic: route.name.clone(),
        key: Some(m.key),
        body: m.body.into(),
        tags: m.tags,
        properties,
        partition_id: -2,
        hash_id: 0,
        opts: crate::writer::SendOpts {
            strong_order: route.strong_order,
            // Fires are sent singly: the scheduler already batches their hand-off.
            auto_batch: None,
            topic_auto_batch: false,
        },
    };
    let deadline = Instant::now() + sink.timeout;
    let out = match sink.forwarder.send_record(writer, &rec, deadline).await {
        Ok(()) => Outcome::Delivered,
        Err(e) => outcome(e.code().as_i32(), e.to_string()),
    };
    let result = match out {
        Outcome::Delivered => "ok",
        Outcome::Permanent { .. } => "dead",
        Outcome::Retry { .. } => "retry",
    };
    let labels = TopicResult {
        topic: route.name.clone(),
        result,
    };
    sink.metrics.delay_fired.get_or_create(&labels).inc();
    out
}

impl Sink for WriterSink {
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(fire(self.clone(), m))
    }
}
