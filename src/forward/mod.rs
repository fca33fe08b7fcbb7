//! Normal sends: validate -> admit -> delay gate -> route -> writer (forwarding.md §1).

pub mod admit;
pub mod route;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::time::Instant;

use crate::app::App;
use crate::config::snapshot::Snapshot;
use crate::proto::{Code, Message, Outcome};
use crate::writer::{ClusterWriter, Record, SendError};

/// Property whose presence lets a write reach a delay topic.
pub const FROM_CHRONOS: &str = "from_chronos";

/// A message that passed steps 3-7, ready for the writer.
struct Admitted<'a> {
    writer: &'a ClusterWriter,
    record: Record,
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
        record: Record {
            topic: route.name.clone(),
            key: m.key,
            body,
            tags: m.tags,
            properties: m.properties,
            partition_id: m.partition_id,
            hash_id: m.hash_id,
        },
    })
}

/// Records one broker attempt (or pipelined chain) in the broker metrics.
fn observe_broker(
    app: &App,
    writer: &ClusterWriter,
    started: Instant,
    results: &[Result<(), SendError>],
) {
    let m = &app.metrics;
    let (backend, cluster) = (writer.backend().to_string(), writer.name().to_string());
    m.broker_duration
        .get((backend.clone(), cluster.clone()))
        .observe(started.elapsed().as_secs_f64());
    for r in results {
        let outcome = match r {
            Ok(()) => "ok",
            Err(SendError::Timeout) => "timeout",
            Err(SendError::Retriable(_)) => "retriable",
            Err(_) => "error",
        };
        m.broker_sends
            .add((backend.clone(), cluster.clone(), outcome.into()), 1);
    }
}

/// Sends one record through `writer`, answering by `deadline`, with metrics.
pub async fn send_record(
    app: &App,
    writer: &ClusterWriter,
    rec: &Record,
    deadline: Instant,
) -> Result<(), SendError> {
    let started = Instant::now();
    let r = match tokio::time::timeout_at(deadline, writer.send(rec, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Timeout),
    };
    observe_broker(app, writer, started, std::slice::from_ref(&r));
    r
}

fn outcome_of(r: Result<(), SendError>) -> Outcome {
    match r {
        Ok(()) => Code::Ok.into(),
        Err(e) => {
            tracing::debug!(error = %e, "send failed");
            e.code().into()
        }
    }
}

/// `sendSync` / `sendAsync` after the drain and heartbeat checks.
pub async fn send_one(app: &Arc<App>, m: Option<Message>, deadline: Instant) -> Outcome {
    let Some(m) = m else {
        return Code::Illegal.into();
    };
    let snap = app.config.load_full();
    let a = match admit_one(&snap, m) {
        Ok(a) => a,
        Err(code) => return code.into(),
    };
    let topic = a.record.topic.clone();
    let out = outcome_of(send_record(app, a.writer, &a.record, deadline).await);
    app.metrics
        .messages
        .add((topic, out.code.as_i32().to_string()), 1);
    out
}

/// `sendBatchSync` (forwarding.md §5).
pub async fn send_batch(app: &Arc<App>, ms: Vec<Message>, deadline: Instant) -> Outcome {
    app.metrics.rpc_batch_size.get(()).observe(ms.len() as f64);
    if ms.is_empty() {
        return Code::Ok.into();
    }
    let snap = app.config.load_full();
    let mut admitted = Vec::with_capacity(ms.len());
    for m in ms {
        match admit_one(&snap, m) {
            Ok(a) => admitted.push(a),
            Err(code) => return code.into(),
        }
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
            observe_broker(app, writer, started, &res);
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
            app.metrics
                .messages
                .add((topic, code.as_i32().to_string()), 1);
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
                app.metrics
                    .batch_partial
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(stored, index = i, "batch partially stored");
            }
            outcome_of(Err(e))
        }
    }
}
