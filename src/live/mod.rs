//! The configuration in force: carrera.yaml and the snapshot requests read, swapped as a whole
//! by the reload paths (SIGHUP, the local file's mtime, ZooKeeper watches).

pub mod reload;
pub mod zk;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::config::settings::Settings;
use crate::forward::snapshot::Snapshot;
use crate::lifecycle::Tasks;
use crate::metrics::scrape::gauge;
use crate::writer::embedded::EmbeddedHandle;

/// The settings and configuration generation in force, and what a new generation is built
/// from. Readers take one value for a whole request; writers swap whole values.
pub struct LiveConfig {
    settings: ArcSwap<Settings>,
    snapshot: ArcSwap<Snapshot>,
    node: String,
    embedded: Option<EmbeddedHandle>,
}

impl LiveConfig {
    /// The first generation of a node named `node` (`"<host>:<port>"`).
    pub fn new(
        settings: Settings,
        snapshot: Snapshot,
        node: String,
        embedded: Option<EmbeddedHandle>,
    ) -> Arc<LiveConfig> {
        Arc::new(LiveConfig {
            settings: ArcSwap::from_pointee(settings),
            snapshot: ArcSwap::from_pointee(snapshot),
            node,
            embedded,
        })
    }

    /// carrera.yaml in force (a cheap guard: do not hold it across an await).
    pub fn settings(&self) -> Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// carrera.yaml in force, owned.
    pub fn settings_full(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The configuration generation in force (a cheap guard: do not hold it across an await).
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The configuration generation in force, owned: one per request.
    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// This node's name, `"<host>:<port>"`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The embedded Kafka cluster, in embedded mode.
    pub fn embedded(&self) -> Option<&EmbeddedHandle> {
        self.embedded.as_ref()
    }

    /// Makes `snap` the generation in force and returns its number. Requests still holding the
    /// previous generation finish on its producers; then those flush (a task of `tasks`, bounded
    /// by `flush`), unless `snap` reuses them.
    pub fn install(&self, snap: Snapshot, flush: Duration, tasks: &Tasks) -> u64 {
        let generation = snap.generation;
        let snap = Arc::new(snap);
        let old = self.snapshot.swap(snap.clone());
        debug_assert!(
            generation > old.generation,
            "generations only grow: {} after {}",
            generation,
            old.generation
        );
        if !same_writers(&old, &snap) {
            tasks.spawn(async move {
                for w in old.writers.clusters.values() {
                    w.flush(flush).await;
                }
            });
        }
        generation
    }

    /// Puts new settings in force (the restart-only keys already merged in).
    fn store_settings(&self, settings: Arc<Settings>) {
        self.settings.store(settings);
    }
}

/// Whether two generations share their producers.
pub fn same_writers(a: &Snapshot, b: &Snapshot) -> bool {
    a.writers.clusters.len() == b.writers.clusters.len()
        && a.writers
            .clusters
            .iter()
            .all(|(k, w)| b.writers.get(k).is_some_and(|x| x.same(w)))
}

/// `/metrics` gauges of the configuration in force, read at scrape time.
pub struct Gauges(pub Arc<LiveConfig>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("live::Gauges")
    }
}

impl Collector for Gauges {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let snap = self.0.snapshot();
        let generation = snap.generation as i64;
        gauge(
            &mut e,
            "pproxy_config_generation",
            "Current configuration generation.",
            generation,
        )?;
        let admitted = snap.topics.all().len() as i64;
        gauge(
            &mut e,
            "pproxy_topics_admitted",
            "Admitted topics.",
            admitted,
        )
    }
}
