//! One immutable configuration generation: topics, writers and limits that requests read.

use std::sync::Arc;

use serde_json::json;

use super::admit::{AutoAdmit, TopicTable};
use super::limit::Limiter;
use crate::config::model::{parse_topic_info, ProxyConfig, TopicConfig};
use crate::config::settings::{Mode, Settings};
use crate::config::ConfigError;
use crate::lifecycle::Tasks;
use crate::metrics::BrokerMetrics;
use crate::writer::embedded::EmbeddedHandle;
use crate::writer::kafka::KafkaCluster;
use crate::writer::rocketmq::RocketmqCluster;
use crate::writer::{ClusterWriter, Writers};

/// Name of the embedded cluster.
pub const EMBEDDED_CLUSTER: &str = "K_embedded";

/// What a request needs from the configuration, fixed for its whole life.
pub struct Snapshot {
    /// Generation number (1 for the first accepted config).
    pub generation: u64,
    /// Where it came from: `local`, `embedded`, `zk`, `cache`.
    pub source: &'static str,
    /// The proxy config document in force.
    pub proxy: ProxyConfig,
    /// Admitted topics.
    pub topics: TopicTable,
    /// Writers by cluster.
    pub writers: Writers,
    /// Rate limiter buckets, when `useRequestLimiter` is on.
    pub limiter: Option<Limiter>,
    /// ZooKeeper topic documents in force (kept when a newer version is invalid).
    pub zk_topics: Vec<TopicConfig>,
    /// The librdkafka overrides the writers were built with.
    pub kafka_overrides:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

impl Snapshot {
    /// Whether the backend type of `cluster` is enabled and a writer exists.
    pub fn writer(&self, cluster: &str) -> Option<&ClusterWriter> {
        let c = &self.proxy.carrera;
        if c.rocketmq.contains_key(cluster) {
            // RocketMQ wins when a name is in both maps.
            if !c.use_rocketmq {
                return None;
            }
            return self
                .writers
                .get(cluster)
                .filter(|w| matches!(w, ClusterWriter::Rocketmq(_)));
        }
        if c.kafka.contains_key(cluster) && !c.use_kafka {
            return None;
        }
        self.writers.get(cluster)
    }

    /// Warm-up before the Thrift port opens (forwarding.md §7.5): producers started and routes or
    /// metadata fetched for every admitted topic, bounded by `timeout`; failures are logged only.
    pub async fn warm_up(&self, timeout: std::time::Duration) {
        let c = &self.proxy.carrera;
        if !c.warm_up_fetch_topic_route_info && !c.warm_up_connection {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut per_cluster: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for t in self.topics.all() {
            for cl in &t.clusters {
                per_cluster
                    .entry(cl.clone())
                    .or_default()
                    .push(t.name.to_string());
            }
        }
        let jobs = per_cluster.into_iter().filter_map(|(cl, topics)| {
            let w = self.writer(&cl)?.clone();
            Some(async move {
                match &w {
                    ClusterWriter::Rocketmq(r) => r.warm_up(&topics, deadline).await,
                    ClusterWriter::Kafka(k) => {
                        for t in &topics {
                            if let Err(e) = k.partition_count(t, deadline).await {
                                tracing::warn!(cluster = k.name(), topic = %t, error = %e, "metadata warm-up failed");
                            }
                        }
                    }
                }
            })
        });
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(jobs)).await;
    }

    /// A JSON summary for `/status`.
    pub fn status_json(&self) -> serde_json::Value {
        let topics: Vec<_> = self
            .topics
            .all()
            .iter()
            .map(|t| {
                json!({
                    "topic": &*t.name, "clusters": t.clusters, "delayTopic": t.delay_topic,
                    "autoBatch": t.auto_batch, "strongOrder": t.strong_order,
                    "sizeLimit": t.size_limit, "maxTps": t.max_tps,
                })
            })
            .collect();
        let mut clusters = serde_json::Map::new();
        for name in self.proxy.carrera.kafka.keys() {
            clusters.insert(
                name.clone(),
                json!({"type": "kafka", "producer": self.writers.get(name).is_some()}),
            );
        }
        for name in self.proxy.carrera.rocketmq.keys() {
            let mut c = json!({"type": "rocketmq", "producer": self.writers.get(name).is_some()});
            if let (Some(ClusterWriter::Rocketmq(r)), Some(o)) =
                (self.writers.get(name), c.as_object_mut())
            {
                o.insert("writer".into(), r.status_json());
            }
            clusters.insert(name.clone(), c);
        }
        json!({
            "configSource": self.source,
            "configGeneration": self.generation,
            "topics": topics,
            "clusters": clusters,
        })
    }
}

/// The synthesized proxy config of embedded mode (config.md §7).
pub fn embedded_proxy_config(bootstrap: &str) -> ProxyConfig {
    let doc = json!({
        "proxyCluster": "P_embedded",
        "brokerClusters": [EMBEDDED_CLUSTER],
        "topics": [],
        "carreraConfiguration": {
            "useKafka": true,
            "kafkaProducers": 1,
            "useRequestLimiter": false,
            "delay": {"chronosInnerTopicPrefix": "chronos_inner_", "innerTopicNum": 1},
            "kafkaConfigurationMap": {
                EMBEDDED_CLUSTER: {"bootstrapServers": [bootstrap], "acks": "all"}
            }
        }
    });
    // The document is fixed above; parsing it cannot fail except by a programming error.
    ProxyConfig::parse(&doc.to_string(), false).expect("embedded config is valid")
}

/// What a new generation is built from, besides its documents.
pub struct Build<'a> {
    /// carrera.yaml in force.
    pub settings: &'a Settings,
    /// This node's name (topic admission by node).
    pub node: &'a str,
    /// The embedded cluster every Kafka cluster points at, in embedded mode.
    pub embedded: Option<&'a EmbeddedHandle>,
    /// The generation in force, whose writers are reused where their config is unchanged.
    pub previous: Option<&'a Snapshot>,
    /// The process's tasks: the writers' background work runs as tasks of these.
    pub tasks: &'a Tasks,
    /// The broker families new writers take their cluster's series from.
    pub broker: &'a BrokerMetrics,
}

/// Builds writers for every cluster of `proxy`; with `embedded`, every Kafka cluster points at
/// it. The previous generation's writers are reused when their part of the config is unchanged.
fn build_writers(b: &Build<'_>, proxy: &mut ProxyConfig) -> Result<Writers, ConfigError> {
    let (settings, embedded, previous) = (b.settings, b.embedded, b.previous);
    if let Some(e) = embedded {
        for k in proxy.carrera.kafka.values_mut() {
            k.bootstrap_servers = vec![e.bootstrap().to_string()];
        }
    }
    let mut writers = Writers::default();
    // RocketMQ writers are reused per cluster while its config and instance count are unchanged:
    // their lanes and routes survive reloads.
    for (name, conf) in &proxy.carrera.rocketmq {
        let reuse = previous.and_then(|prev| {
            let same = prev.proxy.carrera.rocketmq.get(name) == Some(conf)
                && prev.proxy.carrera.rocketmq_producers == proxy.carrera.rocketmq_producers;
            same.then(|| prev.writers.get(name).cloned()).flatten()
        });
        let w = match reuse {
            Some(w @ ClusterWriter::Rocketmq(_)) => w,
            _ => ClusterWriter::Rocketmq(Arc::new(RocketmqCluster::new(
                name,
                conf,
                &settings.forwarding,
                proxy.carrera.rocketmq_producers,
                b.tasks.clone(),
                b.broker.cluster("rocketmq", name),
            ))),
        };
        writers.clusters.insert(name.clone(), w);
    }
    if let Some(prev) = previous {
        let same = prev.proxy.carrera.kafka == proxy.carrera.kafka
            && prev.proxy.carrera.kafka_producers == proxy.carrera.kafka_producers
            && prev.kafka_overrides == settings.kafka_overrides;
        if same {
            for (name, w) in &prev.writers.clusters {
                if matches!(w, ClusterWriter::Kafka(_))
                    && !proxy.carrera.rocketmq.contains_key(name)
                {
                    writers.clusters.insert(name.clone(), w.clone());
                }
            }
            return Ok(writers);
        }
    }
    for (name, conf) in &proxy.carrera.kafka {
        if proxy.carrera.rocketmq.contains_key(name) {
            continue;
        }
        let k = KafkaCluster::new(
            name,
            conf,
            &settings.forwarding,
            &settings.kafka_overrides,
            proxy.carrera.kafka_producers,
            embedded.cloned(),
            b.broker.cluster("kafka", name),
        )
        .map_err(|e| ConfigError::Producer(name.clone(), e.to_string()))?;
        writers
            .clusters
            .insert(name.clone(), ClusterWriter::Kafka(Arc::new(k)));
    }
    Ok(writers)
}

/// A snapshot from a proxy config document plus ZooKeeper topic documents.
pub fn from_documents(
    b: &Build<'_>,
    mut proxy: ProxyConfig,
    zk_topics: &[TopicConfig],
    source: &'static str,
) -> Result<Snapshot, ConfigError> {
    let (settings, node, previous) = (b.settings, b.node, b.previous);
    let yaml_static: Vec<TopicConfig> = match &settings.default_topic_info_conf {
        Some(v) => parse_topic_info(v)?,
        None => Vec::new(),
    };
    let writers = build_writers(b, &mut proxy)?;
    let topics = TopicTable::build(&proxy, &yaml_static, zk_topics, node);
    let limiter = proxy.carrera.use_request_limiter.then(|| {
        Limiter::new(
            proxy.carrera.max_tps,
            proxy.carrera.tps_warning_ratio,
            &topics.all(),
        )
    });
    Ok(Snapshot {
        limiter,
        generation: previous.map_or(1, |p| p.generation + 1),
        source,
        proxy,
        topics,
        writers,
        zk_topics: zk_topics.to_vec(),
        kafka_overrides: settings.kafka_overrides.clone(),
    })
}

/// Loads a snapshot for local or embedded mode (ZooKeeper mode has its own loop, `live::zk`).
pub fn load_initial(b: &Build<'_>) -> Result<Snapshot, ConfigError> {
    let (settings, embedded, previous) = (b.settings, b.embedded, b.previous);
    match settings.mode() {
        Mode::Local(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            let proxy = ProxyConfig::parse(&text, false)?;
            from_documents(b, proxy, &[], "local")
        }
        Mode::Embedded => {
            let e =
                embedded.ok_or_else(|| ConfigError::Invalid("embedded cluster missing".into()))?;
            let mut proxy = embedded_proxy_config(e.bootstrap());
            let writers = build_writers(b, &mut proxy)?;
            let topics = TopicTable::auto(AutoAdmit::new(
                EMBEDDED_CLUSTER,
                settings.embedded_delay_topics.clone(),
                &proxy.carrera.inner_topic_prefix,
            ));
            Ok(Snapshot {
                limiter: None,
                generation: previous.map_or(1, |p| p.generation + 1),
                source: "embedded",
                proxy,
                topics,
                writers,
                zk_topics: Vec::new(),
                kafka_overrides: settings.kafka_overrides.clone(),
            })
        }
        Mode::ZooKeeper => Err(ConfigError::Invalid(
            "ZooKeeper mode loads through its own loop".into(),
        )),
    }
}
