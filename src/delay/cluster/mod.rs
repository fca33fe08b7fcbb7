//! Cluster mode for delay messages (delay.md §10, docs/CLUSTER.md): every node appends adds and
//! cancels to a journal topic and answers once the broker acknowledged them; the owner of each
//! journal partition (consumer-group assignment) applies them to its own store and fires
//! them through the normal writer.

pub mod confirm;
pub mod forward;
pub mod journal;
pub mod owner;
pub mod partition;
pub mod pending;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use scheduler::{DelayId, Record};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::sink::WriterSink;
use crate::config::settings::Settings;
use crate::forward::snapshot::Snapshot;
use crate::lifecycle::Tasks;
use journal::Entry;

/// Why cluster mode cannot start or a journal append failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// carrera.yaml or the proxy configuration does not allow cluster mode.
    #[error("cluster mode: {0}")]
    Config(String),
    /// The broker refused or did not answer.
    #[error("journal: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The partition's store failed.
    #[error("partition store: {0}")]
    Store(String),
    /// `scheduler.maxPending` reached cluster-wide (docs/CLUSTER.md, "maxPending").
    #[error("too many pending records in the cluster ({0})")]
    Full(i64),
    /// No owner of the partition confirmed within the bound that it applied a journaled cancel.
    #[error("cancel not confirmed by the partition's owner: {0}")]
    Unconfirmed(String),
}

/// State of one partition this node owns.
pub struct Owned {
    /// Journal partition.
    pub partition: i32,
    /// Offset of this node's claim record (0 until the claim is acknowledged).
    pub epoch: AtomicI64,
    /// Replay finished and firing: the fence every fire checks.
    pub active: AtomicBool,
    /// Cancelled when the partition is lost: revoked, claimed by another node, or this node
    /// stops (a child of [`Cluster::stop`]). Its scheduler's stop token is a child of it.
    pub lost: CancellationToken,
    /// Every task of the partition: its owner task and its scheduler's tasks. Closed once the
    /// owner task ended; waiting for it waits for the partition to have stopped.
    pub tasks: TaskTracker,
    /// The partition's scheduler, once replay finished.
    pub engine: Mutex<Option<scheduler::Scheduler>>,
    /// When the assignment arrived (for the claim-to-active time).
    pub since: std::time::Instant,
    /// How long the replay up to the claim took, ms (shown by `/delay/cluster`).
    pub replay_ms: std::sync::atomic::AtomicU64,
    /// Journal offset this node's scheduler of the partition has applied through (-1: none
    /// yet); a cancel is confirmed against it (confirm.rs).
    pub applied: tokio::sync::watch::Sender<i64>,
}

impl Owned {
    /// Whether fires may be handed to the writer now.
    pub fn may_fire(&self) -> bool {
        self.active.load(Ordering::Acquire) && !self.lost.is_cancelled()
    }

    /// The partition's running scheduler, if it is active.
    pub fn engine(&self) -> Option<scheduler::Scheduler> {
        if !self.may_fire() {
            return None;
        }
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the journal is applied through `offset` by this partition's scheduler:
    /// true, or false once the partition is lost (the next owner replays it).
    pub async fn applied_through(&self, offset: i64) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::select! {
            r = rx.wait_for(|a| *a >= offset) => r.is_ok() && !self.lost.is_cancelled(),
            _ = self.lost.cancelled() => false,
        }
    }
}

/// Counters of cluster mode, rendered by the metrics page.
#[derive(Default)]
pub struct ClusterStats {
    /// Journal appends acknowledged: add, cancel, fired, claim.
    pub appends: [AtomicU64; 4],
    /// Journal appends that failed.
    pub append_errors: AtomicU64,
    /// Journal records applied by owners.
    pub applied: AtomicU64,
    /// Fired markers of another epoch seen while active (a previous owner still firing).
    pub foreign_fired: AtomicU64,
    /// Partitions gained / lost.
    pub gained: AtomicU64,
    /// Partitions lost.
    pub lost: AtomicU64,
    /// Tombstones appended for finished ids.
    pub tombstones: AtomicU64,
    /// Cancels confirmed applied by this node's own partition, by another node (the owner),
    /// and not confirmed within the bound (answered 10); confirm.rs.
    pub cancel_confirms: [AtomicU64; 3],
}

/// A running cluster-mode node.
pub struct Cluster {
    /// Journal topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// Consumer group deciding ownership.
    pub group: String,
    /// This node's name.
    pub node: String,
    /// This node's admin address, as other nodes reach it.
    pub admin: String,
    /// Bootstrap servers of the journal cluster.
    pub bootstrap: String,
    /// librdkafka settings of the journal cluster (`kafkaOverrides`).
    pub overrides: Vec<(String, String)>,
    /// Session timeout and heartbeat of the ownership group, ms.
    pub session_timeout_ms: u64,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Where the partitions' stores live.
    pub data_dir: PathBuf,
    producer: FutureProducer,
    /// Partitions owned now.
    pub owned: Mutex<HashMap<i32, Arc<Owned>>>,
    /// Stores opened by this process, by partition: every engine locks its directory, so a partition
    /// regained later reuses the open handle.
    pub stores: Mutex<HashMap<i32, scheduler::JournalStore>>,
    /// Counters.
    pub stats: ClusterStats,
    /// What owned partitions fire through (and the settings their schedulers are opened with).
    pub sink: WriterSink,
    /// Cancelled when the node shuts down (a phase of the process's tasks): no partition is
    /// taken any more and every owned partition stops firing.
    pub stop: CancellationToken,
    /// The process's tasks: every task of cluster mode is spawned through them.
    tasks: Tasks,
    membership: Mutex<Option<owner::Membership>>,
    /// How forwarded admin calls reach the other nodes (TLS with `server.adminTls`).
    pub peers: forward::Peers,
    /// The cluster-wide pending count `maxPending` is checked against.
    pub pending: pending::PendingTotal,
    /// The group's members and partitions as last described, and when (confirm.rs).
    owners: Mutex<Option<(std::time::Instant, Members)>>,
}

/// The group's members: client id and assigned journal partitions.
pub type Members = Vec<(String, Vec<i32>)>;

/// What `add` or `cancel` answers when the journal append failed.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Checks the settings, creates the journal topic when missing and connects the producer.
    /// Owned partitions fire through `sink`. Every task of the node is spawned through `tasks`,
    /// and ends with its shutdown.
    pub async fn connect(
        settings: &Settings,
        snap: &Snapshot,
        sink: WriterSink,
        tasks: &Tasks,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let cs = &settings.scheduler.cluster;
        let Plan {
            topic,
            bootstrap,
            group,
        } = plan(cs, &snap.proxy)?;
        let overrides: Vec<(String, String)> = snap
            .kafka_overrides
            .get(cs.journal_cluster.trim())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let node = cs
            .node_name
            .clone()
            .unwrap_or_else(|| sink.live.node().to_string());
        let admin = cs.advertised_admin.clone().unwrap_or_else(|| {
            let bind = settings.server.admin_bind_addr;
            let host = if bind.is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                bind
            };
            std::net::SocketAddr::new(host, settings.admin_port).to_string()
        });
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // A lone add must not wait for a batch window; under load librdkafka still packs
            // the adds that queue while a request is in flight.
            .set("linger.ms", "0")
            .set("message.timeout.ms", APPEND_TIMEOUT.as_millis().to_string());
        for (k, v) in &overrides {
            pc.set(k, v);
        }
        let producer: FutureProducer = pc.create()?;
        let peers = forward::Peers::from_settings(settings)
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        let partitions = ensure_topic(&bootstrap, &overrides, &topic, cs, tasks).await?;
        Ok(Arc::new(Cluster {
            topic,
            partitions,
            group,
            node,
            admin,
            bootstrap,
            overrides,
            session_timeout_ms: whole_ms(cs.session_timeout_ms),
            heartbeat_ms: whole_ms(cs.heartbeat_ms),
            data_dir: settings.data_dir.join("delay-cluster"),
            producer,
            owned: Mutex::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
            stats: ClusterStats::default(),
            sink,
            stop: tasks.phase(),
            tasks: tasks.clone(),
            membership: Mutex::new(None),
            peers,
            pending: pending::PendingTotal::default(),
            owners: Mutex::new(None),
        }))
    }

    /// Joins the ownership group: from now on this node fires the partitions it is assigned.
    pub fn start(self: &Arc<Self>) -> Result<(), ClusterError> {
        let m = owner::Membership::start(self.clone(), tokio::runtime::Handle::current())?;
        *self.membership.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
        let me = self.clone();
        self.tasks
            .spawn_until_shutdown(async move { pending::refresh(me).await });
        Ok(())
    }

    /// Appends `e` to partition `p` and waits for the broker's acknowledgement (acks=all);
    /// answers the record's offset.
    pub async fn append(&self, p: i32, e: &Entry) -> Result<i64, ClusterError> {
        let key = e.key();
        let value = e.encode();
        let rec = FutureRecord::to(&self.topic)
            .partition(p)
            .key(&key)
            .payload(&value);
        let kind = match e {
            Entry::Add { .. } => 0,
            Entry::Cancel { .. } => 1,
            Entry::Fired { .. } => 2,
            Entry::Claim { .. } => 3,
        };
        match self.producer.send(rec, APPEND_TIMEOUT).await {
            Ok(d) => {
                self.stats.appends[kind].fetch_add(1, Ordering::Relaxed);
                Ok(d.offset)
            }
            Err((err, _)) => {
                self.stats.append_errors.fetch_add(1, Ordering::Relaxed);
                Err(ClusterError::Kafka(err))
            }
        }
    }

    /// Deletes the journal records of a finished id (its add-or-cancel and its fired marker)
    /// with tombstones, so the compacted journal holds only live ids. Best effort: a lost
    /// tombstone leaves one finished id in the journal, which replays as finished.
    pub fn forget(self: &Arc<Self>, p: i32, id: &str) {
        let me = self.clone();
        let keys = [id.to_string(), format!("{id}#fired")];
        self.tasks.spawn(async move {
            for key in keys {
                let rec: FutureRecord<'_, String, [u8]> =
                    FutureRecord::to(&me.topic).partition(p).key(&key);
                if me.producer.send(rec, APPEND_TIMEOUT).await.is_ok() {
                    me.stats.tombstones.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Journals an add; answered once the broker has it. Refused while the cluster-wide pending
    /// count is at `scheduler.maxPending` or above.
    pub async fn add(&self, id: String, record: Record) -> Result<(), ClusterError> {
        let limit = self.sink.live.settings().scheduler.max_pending;
        if let Some(total) = self.pending.refuses(limit) {
            return Err(ClusterError::Full(total));
        }
        let p = journal::partition_of(&record.id.uuid, self.partitions);
        let e = Entry::Add {
            id,
            record: Box::new(record),
        };
        self.append(p, &e).await?;
        self.pending.accepted();
        Ok(())
    }

    /// Journals a cancel of a canonical id; its outcome is decided by the owner when applied
    /// ([`confirm::applied`] waits for that). Answers the record's partition and offset.
    pub async fn cancel(
        &self,
        id: String,
        topic: String,
        principal: Option<String>,
    ) -> Result<(i32, i64), ClusterError> {
        let p = journal::partition_of_id(&id, self.partitions);
        let e = Entry::Cancel {
            id,
            topic,
            at_ms: chrono::Utc::now().timestamp_millis(),
            principal,
        };
        self.append(p, &e).await.map(|offset| (p, offset))
    }

    /// Partition of a canonical id.
    pub fn partition_of_id(&self, canonical: &str) -> i32 {
        journal::partition_of_id(canonical, self.partitions)
    }

    /// Pending count of the partitions this node owns and fires.
    pub fn local_pending(&self) -> i64 {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|o| o.engine())
            .map(|e| e.stats().pending.load(Ordering::Relaxed))
            .sum()
    }

    /// Node name and admin address of the member that owns partition `p` now.
    pub async fn owner_of(self: &Arc<Self>, p: i32) -> Option<(String, String)> {
        self.members()
            .await
            .into_iter()
            .find(|(_, parts)| parts.contains(&p))
            .and_then(|(client_id, _)| forward::member_address(&client_id))
    }

    /// The other members: (node, admin address, partitions), this node left out.
    pub async fn other_members(self: &Arc<Self>) -> Vec<(String, String, Vec<i32>)> {
        self.members()
            .await
            .into_iter()
            .filter_map(|(client_id, parts)| {
                let (node, admin) = forward::member_address(&client_id)?;
                (admin != self.admin).then_some((node, admin, parts))
            })
            .collect()
    }

    /// The owned partition `p`, if this node has it.
    pub fn owned(&self, p: i32) -> Option<Arc<Owned>> {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p)
            .cloned()
    }

    /// `GET /delay/cluster`: this node and its partitions.
    pub fn status_json(&self) -> serde_json::Value {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        let mut parts: Vec<serde_json::Value> = owned
            .values()
            .map(|o| {
                let (pending, loaded, lag) = match o.engine() {
                    Some(e) => (
                        e.stats().pending.load(Ordering::Relaxed),
                        e.loaded_and_inflight().0,
                        crate::delay::service::fired_through_lag_ms(&e),
                    ),
                    None => (0, 0, 0),
                };
                serde_json::json!({
                    "partition": o.partition,
                    "epoch": o.epoch.load(Ordering::Relaxed),
                    "state": if o.may_fire() { "active" } else { "replaying" },
                    "pending": pending,
                    "loaded": loaded,
                    "firedThroughLagMs": lag,
                    "replayMs": o.replay_ms.load(Ordering::Relaxed),
                })
            })
            .collect();
        parts.sort_by_key(|v| v["partition"].as_i64());
        serde_json::json!({
            "node": self.node,
            "admin": self.admin,
            "group": self.group,
            "journalTopic": self.topic,
            "journalPartitions": self.partitions,
            "partitions": parts,
            // The cluster-wide pending count `maxPending` is checked against (refreshed every second).
            "clusterPending": self.pending.get(),
        })
    }

    /// Leaves the group (its partitions move to the other nodes) and stops every partition,
    /// waiting for their tasks (at most `bound` each).
    pub async fn shutdown(&self, bound: Duration) {
        // Every partition stops firing now; none is taken any more.
        self.stop.cancel();
        let m = self
            .membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(m) = m {
            // Leaving the group runs the revoke callback, which waits for every partition.
            m.leave(&self.tasks).await;
        }
        let left: Vec<Arc<Owned>> = self
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, o)| o)
            .collect();
        for o in left {
            partition::release(&o, bound).await;
        }
        let _ = self.producer.flush(bound);
    }
}

/// Where a cluster-mode node journals, from carrera.yaml and the proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Journal topic.
    pub topic: String,
    /// Bootstrap servers of the journal cluster.
    pub bootstrap: String,
    /// Ownership consumer group.
    pub group: String,
}

/// Milliseconds for librdkafka, at least 1.
fn whole_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Checks the cluster settings against the proxy configuration (delay.md §10): a non-blank
/// `chronosInnerTopicPrefix`, a journal topic under it (client writes to it are then refused
/// with 11), and a Kafka journal cluster. Used at start-up and by `check-config`.
pub fn plan(
    cs: &crate::config::settings::ClusterSettings,
    proxy: &crate::config::model::ProxyConfig,
) -> Result<Plan, ClusterError> {
    let prefix = proxy.carrera.inner_topic_prefix.trim();
    if prefix.is_empty() {
        return Err(ClusterError::Config(
            "delay.chronosInnerTopicPrefix must be set (client writes to the journal are refused by it)".into(),
        ));
    }
    let topic = cs
        .journal_topic
        .clone()
        .unwrap_or_else(|| format!("{prefix}journal"));
    if !topic.starts_with(prefix) {
        return Err(ClusterError::Config(format!(
            "journalTopic {topic:?} must start with chronosInnerTopicPrefix {prefix:?}"
        )));
    }
    let kafka = proxy
        .carrera
        .kafka
        .get(cs.journal_cluster.trim())
        .ok_or_else(|| {
            ClusterError::Config(format!(
                "journalCluster {:?} is not a Kafka cluster of the proxy configuration",
                cs.journal_cluster
            ))
        })?;
    let group = cs.group.clone().unwrap_or_else(|| {
        let proxy_cluster = proxy.proxy_cluster.clone().unwrap_or_default();
        format!("pproxy-scheduler-{}", proxy_cluster.trim())
    });
    Ok(Plan {
        topic,
        bootstrap: kafka.bootstrap_servers.join(","),
        group,
    })
}

/// Creates the journal topic (compacted) when it does not exist; answers its partition count.
async fn ensure_topic(
    bootstrap: &str,
    overrides: &[(String, String)],
    topic: &str,
    cs: &crate::config::settings::ClusterSettings,
    tasks: &Tasks,
) -> Result<i32, ClusterError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in overrides {
        c.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = c.create()?;
    let nt = NewTopic::new(
        topic,
        cs.journal_partitions.max(1),
        TopicReplication::Fixed(cs.journal_replication),
    )
    // Compaction keeps the latest add-or-cancel and fired marker of every id for as long as
    // the id matters, where time retention would drop messages due in 62 days (docs/CLUSTER.md).
    .set("cleanup.policy", "compact")
    .set("min.compaction.lag.ms", "3600000");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics([&nt], &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) => tracing::info!(topic, "journal topic created"),
                    Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => {
                        return Err(ClusterError::Config(format!(
                            "cannot create journal topic {t}: {code}"
                        )))
                    }
                }
            }
        }
        Err(e) => return Err(ClusterError::Kafka(e)),
    }
    // The partition count of the topic as it exists (created now or earlier). A topic created
    // a moment ago can still show no partitions in metadata (seen in tests/stack/cluster.rs: 190 ms
    // after the create answered), so ask again for a while before giving up.
    let admin = Arc::new(admin);
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (t, a) = (topic.to_string(), admin.clone());
        let md = tasks
            .spawn_blocking(move || a.inner().fetch_metadata(Some(&t), Duration::from_secs(10)))
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))??;
        let n = md
            .topics()
            .iter()
            .find(|x| x.name() == topic)
            .map_or(0, |x| x.partitions().len() as i32);
        if n > 0 {
            return Ok(n);
        }
        if tokio::time::Instant::now() >= until {
            return Err(ClusterError::Config(format!(
                "journal topic {topic} has no partitions"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The uuid of a canonical id (for status answers).
pub fn uuid_of(canonical: &str) -> Option<String> {
    DelayId::parse(canonical).map(|d| d.uuid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::ProxyConfig;
    use crate::config::settings::ClusterSettings;

    fn shipped() -> ProxyConfig {
        ProxyConfig::parse(include_str!("../../../conf/local-config.json"), false).expect("parses")
    }

    #[test]
    fn plan_defaults_and_refusals() {
        let mut cs = ClusterSettings {
            enabled: true,
            journal_cluster: "K_local".into(),
            ..Default::default()
        };
        let p = plan(&cs, &shipped()).expect("valid");
        assert_eq!(p.topic, "R_test_chronos_inner_journal");
        assert_eq!(p.bootstrap, "127.0.0.1:9092");
        assert_eq!(p.group, "pproxy-scheduler-P_local");

        cs.journal_topic = Some("journal".into());
        let e = plan(&cs, &shipped()).expect_err("outside the prefix");
        assert!(e.to_string().contains("must start with"), "{e}");

        cs.journal_topic = None;
        cs.journal_cluster = "R_local".into();
        let e = plan(&cs, &shipped()).expect_err("not a Kafka cluster");
        assert!(e.to_string().contains("journalCluster"), "{e}");

        let mut proxy = shipped();
        proxy.carrera.inner_topic_prefix = " ".into();
        cs.journal_cluster = "K_local".into();
        let e = plan(&cs, &proxy).expect_err("blank prefix");
        assert!(e.to_string().contains("chronosInnerTopicPrefix"), "{e}");
    }
}
