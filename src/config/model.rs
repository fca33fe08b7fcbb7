//! The DDMQ console's JSON documents: PProxyConfig and TopicConfig (config.md §5).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::lenient::{self, Obj};
use super::ConfigError;

/// `PProxyConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Informational `ip:port`.
    pub instance: Option<String>,
    /// Informational proxy cluster name.
    pub proxy_cluster: Option<String>,
    /// Broker clusters this proxy writes.
    pub broker_clusters: Vec<String>,
    /// Topic whitelist.
    pub topics: BTreeSet<String>,
    /// The `carreraConfiguration` object.
    pub carrera: CarreraConfiguration,
}

/// `CarreraConfiguration`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CarreraConfiguration {
    /// Kafka backend enabled.
    pub use_kafka: bool,
    /// RocketMQ backend enabled.
    pub use_rocketmq: bool,
    /// Producer instances per Kafka cluster (>= 1).
    pub kafka_producers: usize,
    /// Connections per RocketMQ broker (>= 1).
    pub rocketmq_producers: usize,
    /// Kafka clusters.
    pub kafka: BTreeMap<String, KafkaConfiguration>,
    /// RocketMQ clusters.
    pub rocketmq: BTreeMap<String, RocketmqConfiguration>,
    /// Rate limiting on.
    pub use_request_limiter: bool,
    /// Node limit.
    pub max_tps: i64,
    /// Normal/warn split.
    pub tps_warning_ratio: f64,
    /// Pending limiter retries cap.
    pub limiter_failure_retry_queue_size: i64,
    /// RocketMQ auto-batch on.
    pub use_auto_batch: bool,
    /// Auto-batch bounds (`autoBatch`).
    pub auto_batch: AutoBatchConfiguration,
    /// Maximum frame size.
    pub max_read_buffer_bytes: usize,
    /// `delay.chronosInnerTopicPrefix`.
    pub inner_topic_prefix: String,
    /// `delay.innerTopicNum` (>= 1).
    pub inner_topic_num: i64,
    /// Warm-up: open connections.
    pub warm_up_connection: bool,
    /// Warm-up: fetch routes/metadata.
    pub warm_up_fetch_topic_route_info: bool,
    /// Static topics.
    pub default_topics: Vec<TopicConfig>,
}

/// `KafkaConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConfiguration {
    /// Bootstrap servers.
    pub bootstrap_servers: Vec<String>,
    /// acks.
    pub acks: String,
    /// retries (idempotence off only).
    pub retries: i64,
    /// batch.size.
    pub batch_size: i64,
    /// client.id prefix.
    pub client_id: String,
    /// retry.backoff.ms.
    pub retry_backoff: i64,
    /// metadata.max.age.ms.
    pub metadata_max_age: i64,
    /// Bound of pproxy's own metadata waits.
    pub metadata_fetch_timeout: i64,
    /// request.timeout.ms.
    pub ack_timeout: i64,
    /// Producer buffer bytes.
    pub buffer_memory: i64,
}

/// `RocketmqConfiguration` (the fields pproxy uses).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RocketmqConfiguration {
    /// Name servers.
    pub namesrv_addrs: Vec<String>,
    /// Producer group prefix.
    pub group_prefix: String,
    /// zlib threshold.
    pub compress_msg_body_over_howmuch: i64,
    /// Body size limit of topics on this cluster.
    pub max_message_size: i64,
    /// Route refresh interval, ms.
    pub poll_name_server_interval: i64,
    /// Heartbeat interval, ms.
    pub heartbeat_broker_interval: i64,
}

/// `BatchMQProducerConfiguration` (`autoBatch`): the bounds pproxy uses (forwarding.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoBatchConfiguration {
    /// Running body total of a batch stays below this (`maxBathBytes`, sic).
    pub max_bath_bytes: i64,
    /// Only bodies smaller than this are batched.
    pub do_batch_threshold_bytes: i64,
    /// Messages per batch request.
    pub max_batch_messages_number: i64,
}

impl Default for AutoBatchConfiguration {
    fn default() -> Self {
        AutoBatchConfiguration {
            max_bath_bytes: 4096,
            do_batch_threshold_bytes: 1024,
            max_batch_messages_number: 32,
        }
    }
}

impl AutoBatchConfiguration {
    /// Parses `autoBatch`; the checks of config.md apply only when `useAutoBatch` is on.
    fn parse(o: Option<&Obj>, checked: bool) -> Result<Self, ConfigError> {
        let d = AutoBatchConfiguration::default();
        let Some(o) = o else {
            return Ok(d);
        };
        let a = AutoBatchConfiguration {
            max_bath_bytes: lenient::int(o, "maxBathBytes", d.max_bath_bytes)?,
            do_batch_threshold_bytes: lenient::int(
                o,
                "doBatchThresholdBytes",
                d.do_batch_threshold_bytes,
            )?,
            max_batch_messages_number: lenient::int(
                o,
                "maxBatchMessagesNumber",
                d.max_batch_messages_number,
            )?,
        };
        if !checked {
            return Ok(a);
        }
        // The keys that have no effect in pproxy are still checked, as the console expects.
        for (key, default, min) in [
            ("encodeWorkerThreads", 4, 1),
            ("maxEncodeWorkerForEachBroker", 1, 1),
            ("batchWaitMills", 5, 0),
            ("maxContinuouslyRunningMills", 50, 1),
        ] {
            if lenient::int(o, key, default)? < min {
                return Err(ConfigError::Invalid(format!(
                    "`autoBatch.{key}` must be >= {min}"
                )));
            }
        }
        if a.do_batch_threshold_bytes < 0 {
            return Err(ConfigError::Invalid(
                "`autoBatch.doBatchThresholdBytes` must be >= 0".into(),
            ));
        }
        if a.max_bath_bytes <= a.do_batch_threshold_bytes {
            return Err(ConfigError::Invalid(
                "`autoBatch.maxBathBytes` must be > doBatchThresholdBytes".into(),
            ));
        }
        if a.max_batch_messages_number <= 0 {
            return Err(ConfigError::Invalid(
                "`autoBatch.maxBatchMessagesNumber` must be > 0".into(),
            ));
        }
        Ok(a)
    }
}

/// `TopicConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Topic name.
    pub topic: String,
    /// Units.
    pub topic_units: Vec<TopicUnit>,
    /// Delay topic flag.
    pub delay_topic: bool,
    /// Auto-batch eligibility.
    pub auto_batch: bool,
    /// No broker fail-over on retries.
    pub strong_order: bool,
    /// Limiter retry interval, ms (-1 derive, 0 none).
    pub limiter_failure_retry_interval: i64,
}

/// `TopicConfiguration`: one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicUnit {
    /// Broker cluster.
    pub broker_cluster: String,
    /// Proxy cluster -> nodes.
    pub proxies: BTreeMap<String, BTreeSet<String>>,
    /// This node's share of the topic limit.
    pub max_tps: i64,
}

impl TopicUnit {
    /// Whether the unit lists `node` in any proxy set.
    pub fn lists(&self, node: &str) -> bool {
        self.proxies.values().any(|s| s.contains(node))
    }
}

fn positive(key: &str, v: i64) -> Result<i64, ConfigError> {
    if v > 0 {
        Ok(v)
    } else {
        Err(ConfigError::Invalid(format!("`{key}` must be > 0")))
    }
}

impl KafkaConfiguration {
    /// Parses and checks one Kafka cluster.
    pub fn parse(o: &Obj) -> Result<Self, ConfigError> {
        let bootstrap_servers = lenient::strings(o, "bootstrapServers")?;
        if bootstrap_servers.is_empty() {
            return Err(ConfigError::Invalid(
                "`bootstrapServers` must be non-empty".into(),
            ));
        }
        let retries = lenient::int(o, "retries", 3)?;
        if retries < 0 {
            return Err(ConfigError::Invalid("`retries` must be >= 0".into()));
        }
        Ok(KafkaConfiguration {
            bootstrap_servers,
            acks: lenient::string(o, "acks")?.unwrap_or_else(|| "all".into()),
            retries,
            batch_size: positive("batchSize", lenient::int(o, "batchSize", 16384)?)?,
            client_id: lenient::string(o, "clientId")?.unwrap_or_else(|| "pproxy".into()),
            retry_backoff: positive("retryBackoff", lenient::int(o, "retryBackoff", 100)?)?,
            metadata_max_age: positive(
                "metadataMaxAge",
                lenient::int(o, "metadataMaxAge", 300_000)?,
            )?,
            metadata_fetch_timeout: positive(
                "metadataFetchTimeout",
                lenient::int(o, "metadataFetchTimeout", 5000)?,
            )?,
            ack_timeout: positive("ackTimeout", lenient::int(o, "ackTimeout", 30_000)?)?,
            buffer_memory: positive("bufferMemory", lenient::int(o, "bufferMemory", 33_554_432)?)?,
        })
    }
}

impl RocketmqConfiguration {
    /// Parses and checks one RocketMQ cluster.
    pub fn parse(o: &Obj) -> Result<Self, ConfigError> {
        let namesrv_addrs = lenient::strings(o, "namesrvAddrs")?;
        if namesrv_addrs.is_empty() {
            return Err(ConfigError::Invalid(
                "`namesrvAddrs` must be non-empty".into(),
            ));
        }
        Ok(RocketmqConfiguration {
            namesrv_addrs,
            group_prefix: lenient::string(o, "groupPrefix")?
                .unwrap_or_else(|| "carrera_rocketmq_producer_".into()),
            compress_msg_body_over_howmuch: positive(
                "compressMsgBodyOverHowmuch",
                lenient::int(o, "compressMsgBodyOverHowmuch", 4096)?,
            )?,
            max_message_size: positive(
                "maxMessageSize",
                lenient::int(o, "maxMessageSize", 2_097_152)?,
            )?,
            poll_name_server_interval: positive(
                "pollNameServerInterval",
                lenient::int(o, "pollNameServerInterval", 30_000)?,
            )?,
            heartbeat_broker_interval: positive(
                "heartbeatBrokerInterval",
                lenient::int(o, "heartbeatBrokerInterval", 30_000)?,
            )?,
        })
    }
}

impl TopicConfig {
    /// Parses a TopicConfig; `name` (the ZooKeeper node name) wins over the `topic` key.
    pub fn parse(o: &Obj, name: Option<&str>) -> Result<Self, ConfigError> {
        let topic = match name {
            Some(n) => n.to_string(),
            None => lenient::string(o, "topic")?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ConfigError::Invalid("topic without a name".into()))?,
        };
        let mut topic_units = Vec::new();
        for u in lenient::objects(o, "topicUnits")? {
            let mut proxies = BTreeMap::new();
            if let Some(p) = lenient::object(u, "proxies")? {
                for (cluster, nodes) in p {
                    let set: BTreeSet<String> = match nodes {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                        Value::Null => BTreeSet::new(),
                        _ => {
                            return Err(ConfigError::Invalid(
                                "`proxies` values must be lists".into(),
                            ))
                        }
                    };
                    proxies.insert(cluster.clone(), set);
                }
            }
            topic_units.push(TopicUnit {
                broker_cluster: lenient::string(u, "brokerCluster")?.unwrap_or_default(),
                proxies,
                max_tps: lenient::int(u, "maxTps", 1024)?,
            });
        }
        let mut interval = lenient::int(o, "limiterFailureRetryInterval", -1)?;
        if interval < 0 {
            interval = -1;
        }
        Ok(TopicConfig {
            topic,
            topic_units,
            delay_topic: lenient::boolean(o, "delayTopic", false)?,
            auto_batch: lenient::boolean(o, "autoBatch", false)?,
            strong_order: lenient::boolean(o, "strongOrder", false)?,
            limiter_failure_retry_interval: interval,
        })
    }
}

fn parse_topics(o: Option<&Obj>) -> Result<Vec<TopicConfig>, ConfigError> {
    let Some(o) = o else { return Ok(Vec::new()) };
    lenient::objects(o, "topics")?
        .into_iter()
        .map(|t| TopicConfig::parse(t, None))
        .collect()
}

/// Parses the `defaultTopicInfoConf` of carrera.yaml (already converted to JSON).
pub fn parse_topic_info(v: &Value) -> Result<Vec<TopicConfig>, ConfigError> {
    parse_topics(v.as_object())
}

impl ProxyConfig {
    /// Parses and validates a PProxyConfig document. `zk_mode` adds the ZooKeeper-only checks.
    pub fn parse(text: &str, zk_mode: bool) -> Result<Self, ConfigError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Invalid(format!("JSON: {e}")))?;
        let o = v
            .as_object()
            .ok_or_else(|| ConfigError::Invalid("PProxyConfig must be an object".into()))?;
        let instance = lenient::string(o, "instance")?;
        let proxy_cluster = lenient::string(o, "proxyCluster")?;
        if zk_mode
            && (instance.as_deref().unwrap_or("").is_empty()
                || proxy_cluster.as_deref().unwrap_or("").is_empty())
        {
            return Err(ConfigError::Invalid(
                "`instance` and `proxyCluster` must be non-empty".into(),
            ));
        }
        let broker_clusters = lenient::strings(o, "brokerClusters")?;
        if broker_clusters.is_empty() {
            return Err(ConfigError::Invalid(
                "`brokerClusters` must be non-empty".into(),
            ));
        }
        let topics = lenient::strings(o, "topics")?.into_iter().collect();
        let c = lenient::object(o, "carreraConfiguration")?
            .ok_or_else(|| ConfigError::Invalid("`carreraConfiguration` is required".into()))?;
        let carrera = CarreraConfiguration::parse(c, &broker_clusters)?;
        Ok(ProxyConfig {
            instance,
            proxy_cluster,
            broker_clusters,
            topics,
            carrera,
        })
    }
}

impl CarreraConfiguration {
    fn parse(c: &Obj, broker_clusters: &[String]) -> Result<Self, ConfigError> {
        let use_kafka = lenient::boolean(c, "useKafka", false)?;
        let use_rocketmq = lenient::boolean(c, "useRocketmq", false)?;
        let mut kafka = BTreeMap::new();
        if let Some(m) = lenient::object(c, "kafkaConfigurationMap")? {
            for (name, v) in m {
                let o = v
                    .as_object()
                    .ok_or_else(|| ConfigError::Invalid(format!("kafka cluster {name}")))?;
                let k = KafkaConfiguration::parse(o)
                    .map_err(|e| ConfigError::Invalid(format!("kafka cluster {name}: {e}")))?;
                kafka.insert(name.clone(), k);
            }
        }
        let mut rocketmq = BTreeMap::new();
        if let Some(m) = lenient::object(c, "rocketmqConfigurationMap")? {
            for (name, v) in m {
                let o = v
                    .as_object()
                    .ok_or_else(|| ConfigError::Invalid(format!("rocketmq cluster {name}")))?;
                let r = RocketmqConfiguration::parse(o)
                    .map_err(|e| ConfigError::Invalid(format!("rocketmq cluster {name}: {e}")))?;
                rocketmq.insert(name.clone(), r);
            }
        }
        if use_kafka && kafka.is_empty() {
            return Err(ConfigError::Invalid(
                "`kafkaConfigurationMap` must be non-empty when useKafka".into(),
            ));
        }
        if use_rocketmq && rocketmq.is_empty() {
            return Err(ConfigError::Invalid(
                "`rocketmqConfigurationMap` must be non-empty when useRocketmq".into(),
            ));
        }
        for name in kafka.keys().chain(rocketmq.keys()) {
            if !broker_clusters.contains(name) {
                return Err(ConfigError::Invalid(format!(
                    "cluster `{name}` is not in brokerClusters"
                )));
            }
        }
        let max_tps = positive("maxTps", lenient::int(c, "maxTps", 100_000)?)?;
        let ratio = lenient::float(c, "tpsWarningRatio", 0.9)?;
        if ratio <= 0.0 || ratio.is_nan() {
            return Err(ConfigError::Invalid("`tpsWarningRatio` must be > 0".into()));
        }
        let max_read_buffer_bytes = match lenient::object(c, "thriftServer")? {
            Some(t) => positive(
                "maxReadBufferBytes",
                lenient::int(t, "maxReadBufferBytes", 5_000_000)?,
            )?,
            None => 5_000_000,
        };
        let (prefix, num) = match lenient::object(c, "delay")? {
            Some(d) => (
                lenient::string(d, "chronosInnerTopicPrefix")?.unwrap_or_default(),
                lenient::int(d, "innerTopicNum", 1)?,
            ),
            None => (String::new(), 1),
        };
        let use_auto_batch = lenient::boolean(c, "useAutoBatch", false)?;
        let auto_batch =
            AutoBatchConfiguration::parse(lenient::object(c, "autoBatch")?, use_auto_batch)?;
        Ok(CarreraConfiguration {
            use_kafka,
            use_rocketmq,
            kafka_producers: lenient::int(c, "kafkaProducers", 0)?.max(1) as usize,
            rocketmq_producers: lenient::int(c, "rocketmqProducers", 0)?.max(1) as usize,
            kafka,
            rocketmq,
            use_request_limiter: lenient::boolean(c, "useRequestLimiter", false)?,
            max_tps,
            tps_warning_ratio: ratio.min(1.0),
            limiter_failure_retry_queue_size: lenient::int(
                c,
                "limiterFailureRetryQueueSize",
                1024,
            )?,
            use_auto_batch,
            auto_batch,
            max_read_buffer_bytes: max_read_buffer_bytes as usize,
            inner_topic_prefix: prefix,
            inner_topic_num: num.max(1),
            warm_up_connection: lenient::boolean(c, "warmUpConnection", false)?,
            warm_up_fetch_topic_route_info: lenient::boolean(c, "warmUpFetchTopicRouteInfo", true)?,
            default_topics: parse_topics(lenient::object(c, "defaultTopicInfoConf")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../conf/local-config.json");

    #[test]
    fn parses_the_documented_local_example() {
        let p = ProxyConfig::parse(EXAMPLE, false).unwrap();
        assert_eq!(p.broker_clusters.len(), 2);
        assert!(p.carrera.use_kafka && p.carrera.use_rocketmq);
        assert_eq!(p.carrera.default_topics.len(), 3);
        assert_eq!(p.carrera.max_read_buffer_bytes, 5_000_000);
        let reminders = &p.carrera.default_topics[2];
        assert!(reminders.delay_topic);
        assert_eq!(reminders.topic_units[0].max_tps, 1000);
        assert!(reminders.topic_units[0].lists("127.0.0.1:9613"));
    }

    #[test]
    fn rejects_failed_bold_checks() {
        let cases = [
            r#"{"brokerClusters":[],"carreraConfiguration":{}}"#,
            r#"{"brokerClusters":["a"]}"#,
            r#"{"brokerClusters":["a"],"carreraConfiguration":{"useKafka":true}}"#,
            r#"{"brokerClusters":["a"],"carreraConfiguration":{"maxTps":0}}"#,
            r#"{"brokerClusters":["a"],"carreraConfiguration":{"tpsWarningRatio":0}}"#,
            r#"{"brokerClusters":["a"],"carreraConfiguration":{"kafkaConfigurationMap":
                {"b":{"bootstrapServers":["x:1"]}}}}"#,
            r#"{"brokerClusters":["a"],"carreraConfiguration":{"kafkaConfigurationMap":
                {"a":{"bootstrapServers":[]}}}}"#,
        ];
        for c in cases {
            assert!(ProxyConfig::parse(c, false).is_err(), "{c}");
        }
        assert!(ProxyConfig::parse(
            r#"{"brokerClusters":["a"],"carreraConfiguration":{}}"#,
            true
        )
        .is_err());
    }

    #[test]
    fn unknown_keys_and_string_numbers_are_accepted() {
        let p = ProxyConfig::parse(
            r#"{"brokerClusters":["a"],"rateLimit":5,"paramLength":1,
                "carreraConfiguration":{"maxTps":"3000","tpsWarningRatio":"2",
                "delay":{"innerTopicNum":0},"retryDelays":null}}"#,
            false,
        )
        .unwrap();
        assert_eq!(p.carrera.max_tps, 3000);
        assert_eq!(p.carrera.tps_warning_ratio, 1.0);
        assert_eq!(p.carrera.inner_topic_num, 1);
    }
}
