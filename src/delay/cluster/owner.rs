//! Ownership of journal partitions: a consumer-group member that only takes assignments (its
//! partitions stay paused) and starts one task per owned partition (`partition.rs`), and stops
//! it when the partition is revoked (delay.md §10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::partition::{release, run_partition, STOP_BOUND};
use super::{Cluster, ClusterError, Owned};
use crate::lifecycle::Tasks;

/// Rebalance callbacks of the ownership consumer; they run on the membership thread.
struct GroupContext {
    cluster: Weak<Cluster>,
    rt: tokio::runtime::Handle,
}

impl ClientContext for GroupContext {}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (Rebalance::Revoke(tpl), Some(cluster)) = (r, self.cluster.upgrade()) else {
            return;
        };
        // Revoked partitions stop firing before the group moves them: the next owner is
        // assigned only after this callback returns.
        let gone: Vec<Arc<Owned>> = {
            let mut owned = cluster.owned.lock().unwrap_or_else(|e| e.into_inner());
            partitions_of(tpl, &cluster.topic)
                .into_iter()
                .filter_map(|p| owned.remove(&p))
                .collect()
        };
        for o in &gone {
            cluster.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::info!(partition = o.partition, "delay cluster: partition revoked");
            // The fence, for all of them at once.
            o.lost.cancel();
        }
        self.rt.block_on(async {
            for o in gone {
                release(&o, STOP_BOUND).await;
            }
        });
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (Rebalance::Assign(tpl), Some(cluster)) = (r, self.cluster.upgrade()) else {
            return;
        };
        // The member only holds assignments: each owned partition is read by its own task
        // from the offset its store applied last, not from group offsets.
        if let Err(e) = c.pause(tpl) {
            tracing::warn!(error = %e, "delay cluster: cannot pause assigned partitions");
        }
        if cluster.stop.is_cancelled() {
            return;
        }
        let mut owned = cluster.owned.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions_of(tpl, &cluster.topic) {
            if owned.contains_key(&p) {
                continue;
            }
            let o = Arc::new(Owned {
                partition: p,
                epoch: Default::default(),
                active: AtomicBool::new(false),
                lost: cluster.stop.child_token(),
                tasks: TaskTracker::new(),
                engine: std::sync::Mutex::new(None),
                since: Instant::now(),
                replay_ms: Default::default(),
                applied: tokio::sync::watch::Sender::new(-1),
            });
            owned.insert(p, o.clone());
            cluster.stats.gained.fetch_add(1, Ordering::Relaxed);
            tracing::info!(partition = p, "delay cluster: partition assigned");
            // The owner task and the scheduler's tasks are the partition's; the process's
            // tracker holds the partition until all of them ended.
            let part = o.tasks.clone();
            let run = part.spawn_on(run_partition(cluster.clone(), o), &self.rt);
            cluster.tasks.tracker().spawn_on(
                async move {
                    let _ = run.await;
                    part.close();
                    part.wait().await;
                },
                &self.rt,
            );
        }
    }
}

/// The ownership consumer and the blocking task that polls it.
pub struct Membership {
    consumer: Arc<BaseConsumer<GroupContext>>,
    /// Ends the poll loop (a child of [`Cluster::stop`]).
    stop: CancellationToken,
    poll: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins the group and starts polling on a blocking task of the process (callbacks may
    /// block there).
    pub fn start(
        cluster: Arc<Cluster>,
        rt: tokio::runtime::Handle,
    ) -> Result<Membership, ClusterError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cluster.bootstrap);
        for (k, v) in &cluster.overrides {
            c.set(k, v);
        }
        c.set("group.id", &cluster.group)
            // Other nodes read this node's admin address from the group description.
            .set(
                "client.id",
                format!("pproxy-sched|{}|{}", cluster.node, cluster.admin),
            )
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", cluster.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", cluster.heartbeat_ms.to_string())
            // Only moved partitions stop and replay on a rebalance.
            .set("partition.assignment.strategy", "cooperative-sticky");
        let ctx = GroupContext {
            cluster: Arc::downgrade(&cluster),
            rt,
        };
        let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(c.create_with_context(ctx)?);
        consumer.subscribe(&[cluster.topic.as_str()])?;
        let stop = cluster.stop.child_token();
        let (c2, s2) = (consumer.clone(), stop.clone());
        // A blocking poll with a short timeout: the token is checked between polls.
        let poll = cluster.tasks.spawn_blocking(move || {
            while !s2.is_cancelled() {
                // Serves heartbeats' rebalance events; paused partitions deliver nothing.
                if let Some(Err(e)) = c2.poll(Duration::from_millis(100)) {
                    tracing::debug!(error = %e, "delay cluster: group poll");
                }
            }
        });
        Ok(Membership {
            consumer,
            stop,
            poll: Some(poll),
        })
    }

    /// The group's members: (client id, assigned partitions of `topic`).
    pub fn members(&self, group: &str, topic: &str) -> Vec<(String, Vec<i32>)> {
        let Ok(list) = self
            .consumer
            .fetch_group_list(Some(group), Duration::from_secs(5))
        else {
            return Vec::new();
        };
        list.groups()
            .iter()
            .flat_map(|g| g.members())
            .map(|m| {
                let parts = m
                    .assignment()
                    .map(|a| super::forward::assigned_partitions(a, topic))
                    .unwrap_or_default();
                (m.client_id().to_string(), parts)
            })
            .collect()
    }

    /// Leaves the group: the revoke callback stops every owned partition. The consumer is
    /// closed on a blocking task (closing may run a rebalance callback, which blocks).
    pub async fn leave(mut self, tasks: &Tasks) {
        self.stop.cancel();
        if let Some(poll) = self.poll.take() {
            let _ = poll.await;
        }
        let _ = tasks
            .spawn_blocking(move || {
                self.consumer.unsubscribe();
                // Serve the revoke callback of the unsubscribe, then close at once: when the
                // unsubscribe came during a rebalance, only the close sends the LeaveGroup,
                // and the others wait for it before they take the partitions.
                for _ in 0..10 {
                    let _ = self.consumer.poll(Duration::from_millis(50));
                    if self.consumer.assignment().is_ok_and(|a| a.count() == 0) {
                        break;
                    }
                }
            })
            .await;
    }
}

impl Cluster {
    /// The group's members and their partitions (for status forwarding).
    pub async fn members(self: &Arc<Self>) -> Vec<(String, Vec<i32>)> {
        let me = self.clone();
        self.tasks
            .spawn_blocking(move || {
                let m = me.membership.lock().unwrap_or_else(|e| e.into_inner());
                m.as_ref()
                    .map(|m| m.members(&me.group, &me.topic))
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default()
    }
}
