//! The producer instances of one cluster: started together, each serving a fixed share of the
//! queues, each replaceable when the client library stops connecting to a broker that accepts
//! connections (reconnect.rs).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rocketmq_model::common::message::message_queue::MessageQueue;
use tokio::time::Instant;

use super::queues::Routes;
use super::{client, reconnect, Producer};
use crate::config::model::RocketmqConfiguration;
use crate::lifecycle::Tasks;

/// How long a replaced instance stays up for the requests still using it.
const RETIRE_AFTER: Duration = Duration::from_secs(10);
/// Bound of a replaced instance's shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What building an instance needs.
struct Recipe {
    cluster: String,
    conf: RocketmqConfiguration,
    start_millis: i64,
    routes: Arc<Routes>,
    fault_backoff: Duration,
}

impl Recipe {
    async fn build(&self, slot: usize, generation: u32) -> Result<Producer, String> {
        let inner = client::start_producer(
            &self.cluster,
            &self.conf,
            self.start_millis,
            slot,
            generation,
        )
        .await?;
        Ok(Producer {
            inner,
            routes: self.routes.clone(),
            fault_backoff: self.fault_backoff,
            streak: reconnect::Streak::default(),
        })
    }
}

/// A cluster's started producer instances.
pub struct Instances {
    slots: Vec<ArcSwap<Producer>>,
    recipe: Recipe,
    generation: AtomicU32,
    replaced: AtomicU64,
    tasks: Tasks,
}

impl Instances {
    /// Starts `n` instances (at least one).
    pub async fn start(
        cluster: &str,
        conf: &RocketmqConfiguration,
        start_millis: i64,
        n: usize,
        routes: Arc<Routes>,
        fault_backoff: Duration,
        tasks: Tasks,
    ) -> Result<Instances, String> {
        let recipe = Recipe {
            cluster: cluster.into(),
            conf: conf.clone(),
            start_millis,
            routes,
            fault_backoff,
        };
        let mut slots = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            slots.push(ArcSwap::from_pointee(recipe.build(i, 0).await?));
        }
        Ok(Instances {
            slots,
            recipe,
            generation: AtomicU32::new(0),
            replaced: AtomicU64::new(0),
            tasks,
        })
    }

    /// How many instances there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The first instance (route lookups).
    pub fn first(&self) -> Arc<Producer> {
        self.slots[0].load_full()
    }

    /// The instance of `mq`: fixed per (topic, queue) so per-queue order holds.
    pub fn for_queue(&self, mq: &MessageQueue) -> Arc<Producer> {
        let mut h = DefaultHasher::new();
        mq.hash(&mut h);
        self.slots[(h.finish() % self.slots.len() as u64) as usize].load_full()
    }

    /// How many instances were replaced since the start.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// After `p` failed to connect to the broker of `mq`: when a probe is due, connects to the
    /// broker in the background and replaces `p` if the broker accepts.
    pub fn connection_failed(self: &Arc<Self>, p: &Arc<Producer>, mq: &MessageQueue) {
        if !p.streak.claim_probe(Instant::now()) {
            return;
        }
        let (me, p, broker) = (self.clone(), p.clone(), mq.broker_name().to_string());
        self.tasks.spawn_until_shutdown(async move {
            me.probe(&p, &broker).await;
            p.streak.probe_done();
        });
    }

    async fn probe(&self, p: &Arc<Producer>, broker: &str) {
        let addr = p
            .inner
            .default_mq_producer_impl()
            .and_then(|i| i.get_mq_client_factory().ok())
            .and_then(|f| f.find_broker_address_in_publish(&broker.into()));
        let Some(addr) = addr else {
            return;
        };
        if !reconnect::accepts(addr.as_str()).await {
            // The broker is down: the library's refusals are right.
            return;
        }
        let Some(slot) = self.slots.iter().position(|s| Arc::ptr_eq(&s.load(), p)) else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let fresh = match self.recipe.build(slot, generation).await {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(cluster = %self.recipe.cluster, error = %e, "rocketmq: replacement producer did not start");
                return;
            }
        };
        let old = self.slots[slot].compare_and_swap(p, fresh);
        if !Arc::ptr_eq(&old, p) {
            return;
        }
        self.replaced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            cluster = %self.recipe.cluster,
            broker,
            %addr,
            slot,
            generation,
            "rocketmq: the broker accepts connections but the client refused to connect to it \
             (its circuit breaker); producer instance replaced"
        );
        let retired = p.inner.clone();
        self.tasks.spawn_until_shutdown(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            let mut retired = retired;
            let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, retired.shutdown()).await;
        });
    }
}
