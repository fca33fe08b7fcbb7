//! Fires delay occurrences through the normal writer (delay.md §5.4).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use scheduler::{FireMessage, Sink};
use tokio::time::Instant;

use crate::app::App;
use crate::forward::{route, FROM_CHRONOS};
use crate::proto::{Code, Message};
use crate::writer::Record;

/// The scheduler's sink: admission re-check, cluster choice by key hash, writer send.
pub struct WriterSink {
    /// The proxy; weak so the scheduler does not keep the app alive.
    pub app: Weak<App>,
    /// Deadline of one fire attempt.
    pub timeout: Duration,
}

async fn fire(app: Arc<App>, m: FireMessage, timeout: Duration) -> (i32, String) {
    let snap = app.config.load_full();
    let fail = |c: Code| (c.as_i32(), c.msg().to_string());
    let Some(route) = snap.topics.admit(&m.topic) else {
        return fail(Code::NotWhitelisted);
    };
    // Random partition, cluster chosen by the key's hash (partitionId -2 with a key).
    let probe = Message {
        key: Some(m.key.clone()),
        partition_id: -2,
        ..Default::default()
    };
    let cluster = &route.clusters[route::choose_index(&probe, route.clusters.len())];
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
    let deadline = Instant::now() + timeout;
    let out = match crate::forward::send_record(&app, writer, &rec, deadline).await {
        Ok(()) => (0, Code::Ok.msg().to_string()),
        Err(e) => (e.code().as_i32(), e.to_string()),
    };
    let result = match out.0 {
        0 => "ok",
        c if scheduler::engine::is_permanent(c) => "dead",
        _ => "retry",
    };
    app.metrics
        .delay_fired
        .add((rec.topic.clone(), result.into()), 1);
    out
}

impl Sink for WriterSink {
    fn fire(&self, m: FireMessage) -> Pin<Box<dyn Future<Output = (i32, String)> + Send>> {
        let app = self.app.upgrade();
        let timeout = self.timeout;
        Box::pin(async move {
            match app {
                Some(app) => fire(app, m, timeout).await,
                None => (
                    Code::ShuttingDown.as_i32(),
                    Code::ShuttingDown.msg().to_string(),
                ),
            }
        })
    }
}
