//! Topic admission: which topics this node serves and through which clusters (config.md §4).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::model::{ProxyConfig, TopicConfig};

/// Body limit when no RocketMQ cluster bounds it (config.md fix 16).
pub const DEFAULT_SIZE_LIMIT: usize = 2 * 1024 * 1024;

pub use crate::proto::HEARTBEAT_TOPIC;

/// An admitted topic as requests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRoute {
    /// Topic name.
    pub name: Arc<str>,
    /// Candidate broker clusters, sorted by name, deduplicated.
    pub clusters: Vec<String>,
    /// Only delay writes allowed.
    pub delay_topic: bool,
    /// RocketMQ auto-batch eligibility.
    pub auto_batch: bool,
    /// No broker fail-over on retries.
    pub strong_order: bool,
    /// Body size limit in bytes.
    pub size_limit: usize,
    /// Sum of bound units' maxTps.
    pub max_tps: i64,
    /// Limiter retry interval setting.
    pub limiter_failure_retry_interval: i64,
}

/// Embedded auto-admit (config.md §4.3).
#[derive(Debug)]
pub struct AutoAdmit {
    /// Cluster every auto-admitted topic is bound to.
    pub cluster: String,
    /// Names that are delay topics.
    pub delay_topics: Vec<String>,
    /// Reserved prefix, never auto-admitted.
    pub inner_prefix: String,
    cache: RwLock<HashMap<String, Arc<TopicRoute>>>,
}

impl AutoAdmit {
    /// Auto-admission onto `cluster`.
    pub fn new(cluster: &str, delay_topics: Vec<String>, inner_prefix: &str) -> Self {
        AutoAdmit {
            cluster: cluster.into(),
            delay_topics,
            inner_prefix: inner_prefix.into(),
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn admit(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        if let Some(r) = self.cache.read().ok()?.get(topic) {
            return Some(r.clone());
        }
        let valid = (1..=249).contains(&topic.len())
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            && topic != HEARTBEAT_TOPIC
            && (self.inner_prefix.is_empty() || !topic.starts_with(&self.inner_prefix));
        if !valid {
            return None;
        }
        let route = Arc::new(TopicRoute {
            name: topic.into(),
            clusters: vec![self.cluster.clone()],
            delay_topic: self.delay_topics.iter().any(|d| d == topic),
            auto_batch: false,
            strong_order: false,
            size_limit: DEFAULT_SIZE_LIMIT,
            max_tps: 1024,
            limiter_failure_retry_interval: -1,
        });
        let mut cache = self.cache.write().ok()?;
        Some(cache.entry(topic.into()).or_insert(route).clone())
    }

    /// Topics admitted so far.
    pub fn admitted(&self) -> Vec<Arc<TopicRoute>> {
        self.cache
            .read()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The admitted topics of one configuration generation.
#[derive(Debug, Default)]
pub struct TopicTable {
    topics: HashMap<String, Arc<TopicRoute>>,
    auto: Option<AutoAdmit>,
}

impl TopicTable {
    /// Builds the table from static topics (`carrera.yaml` first, then the proxy config's, which
    /// win) and ZooKeeper topics (which replace static ones and need the whitelist).
    pub fn build(
        proxy: &ProxyConfig,
        yaml_static: &[TopicConfig],
        zk_topics: &[TopicConfig],
        node: &str,
    ) -> TopicTable {
        let mut topics = HashMap::new();
        let mut statics: HashMap<&str, &TopicConfig> = HashMap::new();
        for t in yaml_static.iter().chain(&proxy.carrera.default_topics) {
            statics.insert(&t.topic, t);
        }
        for t in statics.values() {
            if let Some(r) = route_for(proxy, t, node, true) {
                topics.insert(t.topic.clone(), Arc::new(r));
            }
        }
        for t in zk_topics {
            topics.remove(&t.topic);
            if proxy.topics.contains(&t.topic) {
                if let Some(r) = route_for(proxy, t, node, false) {
                    topics.insert(t.topic.clone(), Arc::new(r));
                }
            }
        }
        TopicTable { topics, auto: None }
    }

    /// A table that admits topics on first use (embedded mode without a local config).
    pub fn auto(auto: AutoAdmit) -> TopicTable {
        TopicTable {
            topics: HashMap::new(),
            auto: Some(auto),
        }
    }

    /// The route of an admitted topic, or `None` (code 13).
    pub fn admit(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        if let Some(r) = self.topics.get(topic) {
            return Some(r.clone());
        }
        self.auto.as_ref().and_then(|a| a.admit(topic))
    }

    /// All admitted topics (for status and warm-up).
    pub fn all(&self) -> Vec<Arc<TopicRoute>> {
        let mut v: Vec<_> = self.topics.values().cloned().collect();
        if let Some(a) = &self.auto {
            v.extend(a.admitted());
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Binds a topic's units to this node; `None` when no usable unit lists it.
fn route_for(
    proxy: &ProxyConfig,
    t: &TopicConfig,
    node: &str,
    is_static: bool,
) -> Option<TopicRoute> {
    let bound: Vec<_> = t
        .topic_units
        .iter()
        .filter(|u| !u.broker_cluster.is_empty())
        .filter(|u| u.lists(node) || (is_static && u.proxies.values().all(|s| s.is_empty())))
        .collect();
    if bound.is_empty() {
        return None;
    }
    let mut clusters: Vec<String> = bound.iter().map(|u| u.broker_cluster.clone()).collect();
    clusters.sort();
    clusters.dedup();
    let size_limit = clusters
        .iter()
        .filter_map(|c| proxy.carrera.rocketmq.get(c))
        .map(|r| r.max_message_size as usize)
        .min()
        .unwrap_or(DEFAULT_SIZE_LIMIT);
    Some(TopicRoute {
        name: t.topic.as_str().into(),
        clusters,
        delay_topic: t.delay_topic,
        auto_batch: t.auto_batch,
        strong_order: t.strong_order,
        size_limit,
        max_tps: bound.iter().map(|u| u.max_tps).sum(),
        limiter_failure_retry_interval: t.limiter_failure_retry_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> ProxyConfig {
        ProxyConfig::parse(include_str!("../../conf/local-config.json"), false).unwrap()
    }

    #[test]
    fn static_topics_bind_by_proxies() {
        let p = proxy();
        let t = TopicTable::build(&p, &[], &[], "127.0.0.1:9613");
        let orders = t.admit("orders").unwrap();
        assert_eq!(orders.clusters, vec!["K_local".to_string()]);
        assert_eq!(orders.size_limit, DEFAULT_SIZE_LIMIT);
        assert!(t.admit("reminders").unwrap().delay_topic);
        assert_eq!(t.admit("audit").unwrap().size_limit, 2_097_152);
        assert!(t.admit("nope").is_none());
        // another node is not bound
        let t = TopicTable::build(&p, &[], &[], "10.0.0.9:9613");
        assert!(t.admit("orders").is_none());
    }

    #[test]
    fn zk_topics_need_whitelist_and_binding() {
        let p = proxy();
        let doc: serde_json::Value = serde_json::json!({
            "topicUnits": [
                {"brokerCluster": "R_local", "proxies": {"P": ["n:1"]}, "maxTps": 10},
                {"brokerCluster": "K_local", "proxies": {"P": ["n:1"]}, "maxTps": 5},
                {"brokerCluster": "", "proxies": {"P": ["n:1"]}},
                {"brokerCluster": "K_other", "proxies": {"P": ["m:1"]}}
            ]
        });
        let tc = TopicConfig::parse(doc.as_object().unwrap(), Some("orders")).unwrap();
        let t = TopicTable::build(&p, &[], std::slice::from_ref(&tc), "n:1");
        let r = t.admit("orders").unwrap();
        assert_eq!(
            r.clusters,
            vec!["K_local".to_string(), "R_local".to_string()]
        );
        assert_eq!(r.max_tps, 15);
        let tc2 = TopicConfig {
            topic: "other".into(),
            ..tc
        };
        let t = TopicTable::build(&p, &[], &[tc2], "n:1");
        assert!(t.admit("other").is_none(), "not whitelisted");
    }

    #[test]
    fn auto_admit_rules() {
        let t = TopicTable::auto(AutoAdmit::new(
            "K_embedded",
            vec!["d".into()],
            "chronos_inner_",
        ));
        assert!(t.admit("orders.v1-x_y").is_some());
        assert!(t.admit("d").unwrap().delay_topic);
        for bad in [
            "",
            "bad topic",
            "carrera_heartbeat",
            "chronos_inner_0",
            &"a".repeat(250),
        ] {
            assert!(t.admit(bad).is_none(), "{bad}");
        }
    }
}
