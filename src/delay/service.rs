//! The one front door of delay messages: add and cancel (`handle`, in request.rs), status, dead
//! letters, re-drive, purge, readiness, figures and shutdown. Single-node and cluster mode
//! differ behind it and nowhere else: callers hold a `DelayService` and never ask which mode runs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;

use super::cluster::Cluster;
use super::sink::WriterSink;
use crate::forward::Forwarder;
use crate::lifecycle::Tasks;
use crate::live::LiveConfig;
use crate::logging::FailureSampler;
use crate::metrics::Metrics;

/// An admin answer: HTTP status and JSON body.
pub type Answer = (u16, String);

fn error(status: u16, v: serde_json::Value) -> Answer {
    (status, v.to_string())
}

/// Why the delay service could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The single-node store (`path`, reason): locked by another process, unreadable, written by
    /// a removed engine.
    #[error("delay store {0}: {1}")]
    Store(String, String),
    /// Cluster mode could not reach or create its journal.
    #[error("delay cluster: {0}")]
    Cluster(String),
}

/// The delay service of one node: what it reads (configuration, the forwarder's rate-limit
/// gate and writer, metrics) and, once opened, where its delay messages live.
pub struct DelayService {
    backend: OnceLock<Backend>,
    pub(super) live: Arc<LiveConfig>,
    pub(super) forwarder: Arc<Forwarder>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) failures: Arc<FailureSampler>,
}

/// Where this node's delay messages live.
pub(super) enum Backend {
    /// One scheduler over `<dataDir>/delay`.
    Single(scheduler::Scheduler),
    /// Journaled on Kafka; each journal partition fired by the node that owns it.
    Cluster(Arc<Cluster>),
}

/// The answer of the admin endpoints until the service is open.
fn not_open() -> Answer {
    error(503, json!({"error": "scheduler not open"}))
}

impl DelayService {
    /// A service not yet open: adds and cancels answer 10, the admin endpoints 503.
    pub fn new(
        live: Arc<LiveConfig>,
        forwarder: Arc<Forwarder>,
        metrics: Arc<Metrics>,
        failures: Arc<FailureSampler>,
    ) -> Arc<DelayService> {
        Arc::new(DelayService {
            backend: OnceLock::new(),
            live,
            forwarder,
            metrics,
            failures,
        })
    }

    pub(super) fn backend(&self) -> Option<&Backend> {
        self.backend.get()
    }

    /// The sink that fires through the proxy's writer, each attempt bounded by `timeout`.
    fn sink(&self, timeout: Duration) -> WriterSink {
        WriterSink {
            live: self.live.clone(),
            forwarder: self.forwarder.clone(),
            metrics: self.metrics.clone(),
            timeout,
        }
    }

    /// Opens what `scheduler.cluster.enabled` asks for: the cluster journal (partition stores
    /// under `<dataDir>/delay-cluster`, owned once `start` joins the group; the single-node store
    /// stays closed), or one scheduler over `<dataDir>/delay`, firing through the proxy's writer.
    /// Their tasks are tasks of `tasks`. Opening twice is a programming error.
    pub async fn open(&self, tasks: &Tasks) -> Result<(), OpenError> {
        debug_assert!(self.backend.get().is_none(), "delay service opened twice");
        let settings = self.live.settings_full();
        let timeout = settings.scheduler.fire_timeout_ms;
        let backend = if settings.scheduler.cluster.enabled {
            let snap = self.live.snapshot_full();
            let c = Cluster::connect(&settings, &snap, self.sink(timeout), tasks)
                .await
                .map_err(|e| OpenError::Cluster(e.to_string()))?;
            tracing::info!(topic = %c.topic, partitions = c.partitions, group = %c.group, node = %c.node, "delay cluster mode");
            Backend::Cluster(c)
        } else {
            let dir = settings.data_dir.join("delay");
            let scope = scheduler::TaskScope {
                tracker: tasks.tracker(),
                stop: tasks.phase(),
            };
            let sink = Arc::new(self.sink(timeout));
            scheduler::Scheduler::open_in(&dir, settings.scheduler.to_config(), sink, scope)
                .await
                .map(Backend::Single)
                .map_err(|e| OpenError::Store(dir.display().to_string(), e.to_string()))?
        };
        let _ = self.backend.set(backend);
        Ok(())
    }

    /// Starts what must wait until the node serves: a cluster node joins the group only once it
    /// can answer forwarded status queries and fire.
    pub fn start(&self) -> Result<(), OpenError> {
        match self.backend() {
            Some(Backend::Cluster(c)) => c.start().map_err(|e| OpenError::Cluster(e.to_string())),
            Some(Backend::Single(_)) | None => Ok(()),
        }
    }

    /// Why the service cannot take adds and cancels now, if it cannot (`/ready`).
    pub fn not_ready(&self) -> Option<&'static str> {
        match self.backend() {
            None => Some("scheduler not open"),
            // Adds and cancels answer 10 until the store is reopened (disk full, read-only).
            Some(Backend::Single(s)) if s.store_failed() => Some("delay store failed"),
            // ... or until its commit in flight returns (a flush that hangs).
            Some(_)
                if self
                    .local_schedulers()
                    .iter()
                    .any(|s| s.store_stuck_ms().is_some()) =>
            {
                Some("delay store stuck")
            }
            Some(_) => None,
        }
    }

    /// The `scheduler` part of `/status`, where this node has one scheduler.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let Some(Backend::Single(sched)) = self.backend() else {
            return None;
        };
        let (loaded, inflight) = sched.loaded_and_inflight();
        Some(json!({
            "pending": sched.stats().pending.load(std::sync::atomic::Ordering::Relaxed),
            "loaded": loaded,
            "inflight": inflight,
            "dead": sched.dead_count(),
            "firedThroughLagMs": fired_through_lag_ms(sched),
            "storeFailed": sched.store_failed(),
            "storeStuckMs": sched.store_stuck_ms(),
            "storeReopens": sched.store_reopens(),
        }))
    }

    /// `GET /delay/cluster`: partitions, owners and journal figures.
    pub fn cluster_json(&self) -> Answer {
        match self.backend() {
            Some(Backend::Cluster(c)) => (200, c.status_json().to_string()),
            Some(Backend::Single(_)) => error(404, json!({"error": "cluster mode is off"})),
            None => not_open(),
        }
    }

    /// `GET /delay/cluster/applied`: 200 once this node applied journal partition `p` through
    /// `offset` (waiting up to `wait`), 503 when it does not own `p` or did not in time.
    pub async fn cluster_applied(&self, p: i32, offset: i64, wait: Duration) -> Answer {
        match self.backend() {
            Some(Backend::Cluster(c)) => super::cluster::confirm::answer(c, p, offset, wait).await,
            Some(Backend::Single(_)) => error(404, json!({"error": "cluster mode is off"})),
            None => not_open(),
        }
    }

    /// `GET /delay/{id}`: the lifecycle of any add or occurrence id. In cluster mode it is
    /// answered by the owner of the id's journal partition, asked over its admin port (with
    /// `admin_token`) unless this query was itself `forwarded` from another node.
    pub async fn status(&self, raw_id: &str, forwarded: bool, admin_token: Option<&str>) -> Answer {
        match self.backend() {
            Some(Backend::Single(s)) => super::status::of(s, raw_id).await,
            Some(Backend::Cluster(c)) => clustered_status(c, raw_id, forwarded, admin_token).await,
            None => not_open(),
        }
    }

    /// The schedulers of this node: the single-node one, or those of its owned partitions.
    fn local_schedulers(&self) -> Vec<scheduler::Scheduler> {
        match self.backend() {
            None => Vec::new(),
            Some(Backend::Single(s)) => vec![s.clone()],
            Some(Backend::Cluster(c)) => c
                .owned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter_map(|o| o.engine())
                .collect(),
        }
    }

    /// `GET /delay/dead`: dead letters, the oldest first, at most `limit`. In cluster mode those of
    /// every partition: this node's, plus every other member's unless this query was itself
    /// `forwarded` (asked with `admin_token`); each entry names its `journalPartition` and
    /// `servedBy`.
    pub async fn dead_letters(
        &self,
        topic: Option<String>,
        limit: usize,
        forwarded: bool,
        admin_token: Option<&str>,
    ) -> super::dead::DeadList {
        let whole = |answer| super::dead::DeadList {
            answer,
            incomplete: None,
        };
        let (parts, cluster) = match self.backend() {
            None => return whole(not_open()),
            Some(Backend::Single(s)) => (vec![(None, s.clone())], None),
            Some(Backend::Cluster(c)) => {
                let owned: Vec<_> = c
                    .owned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter_map(|o| Some((Some(o.partition), o.engine()?)))
                    .collect();
                (owned, Some(c))
            }
        };
        let mut owned_partitions = Vec::new();
        let mut partitions = Vec::new();
        for (p, sched) in parts {
            let list = match sched.dead_letters(topic.clone(), limit).await {
                Ok(l) => l,
                Err(e) => return whole(error(500, json!({"error": e.to_string()}))),
            };
            let items: Vec<_> = list
                .iter()
                .map(|d| {
                    let mut v = json!({"id": d.id, "k": d.k, "topic": d.record.topic, "key": d.record.occurrence_id(d.k),
                                       "code": d.code, "msg": d.msg, "deadMs": d.dead_ms});
                    if let (Some(p), Some(c)) = (p, cluster) {
                        v["journalPartition"] = json!(p);
                        v["servedBy"] = json!(c.node);
                    }
                    v
                })
                .collect();
            owned_partitions.extend(p);
            partitions.push(items);
        }
        match cluster {
            Some(c) if !forwarded => {
                let local = super::dead::merge(partitions, limit);
                super::dead::cluster_list(
                    c,
                    local,
                    owned_partitions,
                    topic.as_deref(),
                    limit,
                    admin_token,
                )
                .await
            }
            _ => whole((
                200,
                json!(super::dead::merge(partitions, limit)).to_string(),
            )),
        }
    }

    /// `POST /delay/dead/{id}/{k}/redrive|purge` on the scheduler that holds `id`. In cluster
    /// mode a node that does not own the id's partition sends it on to the owner (with
    /// `admin_token`) unless it was itself `forwarded`, and answers the owner's answer.
    pub async fn dead_action(
        &self,
        id: String,
        k: u64,
        action: &str,
        forwarded: bool,
        admin_token: Option<&str>,
    ) -> Answer {
        let (sched, tag) = match self.backend() {
            None => return not_open(),
            Some(Backend::Single(s)) => (s.clone(), None),
            Some(Backend::Cluster(c)) => {
                let p = c.partition_of_id(&scheduler::DelayId::canonical_of(&id));
                match c.owned(p).and_then(|o| o.engine()) {
                    Some(e) => (e, Some((p, c.node.clone()))),
                    None if forwarded => {
                        // Ownership moved while the call was forwarded: the caller may try again.
                        return error(
                            503,
                            json!({"error": "this node does not own the id's journal partition", "journalPartition": p}),
                        );
                    }
                    None => {
                        return super::dead::forward_action(c, p, &id, k, action, admin_token).await
                    }
                }
            }
        };
        let answer = match action {
            "redrive" => match sched.redrive(id, k).await {
                Ok(Some(out)) => {
                    let (code, msg) = super::sink::code_and_msg(&out);
                    (200, json!({"code": code, "msg": msg}).to_string())
                }
                Ok(None) => error(404, json!({"error": "no such dead letter"})),
                Err(e) => error(500, json!({"error": e.to_string()})),
            },
            "purge" => match sched.purge(id, k).await {
                Ok(true) => (200, json!({"purged": true}).to_string()),
                Ok(false) => error(404, json!({"error": "no such dead letter"})),
                Err(e) => error(500, json!({"error": e.to_string()})),
            },
            _ => error(404, json!({"error": "unknown action"})),
        };
        match tag {
            Some((p, node)) => super::dead::tagged(answer, p, &node),
            None => answer,
        }
    }

    /// Step 3 of the drain: no new fires; those in flight finish within `bound`; the store
    /// persists. A cluster node also leaves the group, handing its partitions over at once.
    pub async fn shutdown(&self, bound: Duration) {
        match self.backend() {
            Some(Backend::Single(s)) => s.shutdown(bound).await,
            Some(Backend::Cluster(c)) => c.shutdown(bound).await,
            None => {}
        }
    }
}

/// Now minus the fired-through watermark, ms (0 before the first fire).
pub fn fired_through_lag_ms(sched: &scheduler::Scheduler) -> i64 {
    let w = sched
        .commit_stats()
        .fired_through_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    if w > 0 {
        (chrono::Utc::now().timestamp_millis() - w).max(0)
    } else {
        0
    }
}

async fn clustered_status(
    cluster: &Arc<Cluster>,
    raw_id: &str,
    forwarded: bool,
    admin_token: Option<&str>,
) -> Answer {
    let canonical = scheduler::DelayId::canonical_of(raw_id);
    let p = cluster.partition_of_id(&canonical);
    let with_partition = |answer: Answer, by: &str| super::dead::tagged(answer, p, by);
    if let Some(engine) = cluster.owned(p).and_then(|o| o.engine()) {
        return with_partition(super::status::of(&engine, raw_id).await, &cluster.node);
    }
    if forwarded {
        // Ownership moved while the query was forwarded: the caller may try again.
        return error(
            503,
            json!({"error": "not the owner of this id's partition", "journalPartition": p}),
        );
    }
    let Some((node, admin)) = cluster.owner_of(p).await else {
        return error(
            503,
            json!({"error": "no node owns this id's partition now", "journalPartition": p}),
        );
    };
    let path = format!("/delay/{raw_id}");
    let got = cluster
        .peers
        .call(crate::http::Method::GET, &admin, &path, admin_token)
        .await;
    match got {
        Ok(r) => with_partition(r, &node),
        Err(e) => error(
            503,
            json!({"error": format!("owner {node} at {admin}: {e}"), "journalPartition": p}),
        ),
    }
}
