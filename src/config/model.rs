//! The DDMQ console's JSON documents: PProxyConfig and TopicConfig (config.md §5). Each
//! document is deserialized with the leniency of `super::lenient` into the shape it has on the
//! wire, then checked (the bold checks of config.md) and turned into the model pproxy uses.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KafkaConfiguration {
    /// Bootstrap servers.
    pub bootstrap_servers: Vec<String>,
    /// acks.
    #[serde(deserialize_with = "lenient::string")]
    pub acks: String,
    /// retries (idempotence off only).
    #[serde(deserialize_with = "lenient::int")]
    pub retries: i64,
    /// batch.size.
    #[serde(deserialize_with = "lenient::int")]
    pub batch_size: i64,
    /// client.id prefix.
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    /// retry.backoff.ms.
    #[serde(deserialize_with = "lenient::int")]
    pub retry_backoff: i64,
    /// metadata.max.age.ms.
    #[serde(deserialize_with = "lenient::int")]
    pub metadata_max_age: i64,
    /// Bound of pproxy's own metadata waits.
    #[serde(deserialize_with = "lenient::int")]
    pub metadata_fetch_timeout: i64,
    /// request.timeout.ms.
    #[serde(deserialize_with = "lenient::int")]
    pub ack_timeout: i64,
    /// Producer buffer bytes.
    #[serde(deserialize_with = "lenient::int")]
    pub buffer_memory: i64,
}

impl Default for KafkaConfiguration {
    fn default() -> Self {
        KafkaConfiguration {
            bootstrap_servers: Vec::new(),
            acks: "all".into(),
            retries: 3,
            batch_size: 16384,
            client_id: "pproxy".into(),
            retry_backoff: 100,
            metadata_max_age: 300_000,
            metadata_fetch_timeout: 5000,
            ack_timeout: 30_000,
            buffer_memory: 33_554_432,
        }
    }
}

/// `RocketmqConfiguration` (the fields pproxy uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RocketmqConfiguration {
    /// Name servers.
    pub namesrv_addrs: Vec<String>,
    /// Producer group prefix.
    #[serde(deserialize_with = "lenient::string")]
    pub group_prefix: String,
    /// zlib threshold.
    #[serde(deserialize_with = "lenient::int")]
    pub compress_msg_body_over_howmuch: i64,
    /// Body size limit of topics on this cluster.
    #[serde(deserialize_with = "lenient::int")]
    pub max_message_size: i64,
    /// Route refresh interval, ms.
    #[serde(deserialize_with = "lenient::int")]
    pub poll_name_server_interval: i64,
    /// Heartbeat interval, ms.
    #[serde(deserialize_with = "lenient::int")]
    pub heartbeat_broker_interval: i64,
}

impl Default for RocketmqConfiguration {
    fn default() -> Self {
        RocketmqConfiguration {
            namesrv_addrs: Vec::new(),
            group_prefix: "carrera_rocketmq_producer_".into(),
            compress_msg_body_over_howmuch: 4096,
            max_message_size: 2_097_152,
            poll_name_server_interval: 30_000,
            heartbeat_broker_interval: 30_000,
        }
    }
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

/// `autoBatch` as written: the keys without effect in pproxy are kept raw, because they are
/// type-checked only when `useAutoBatch` is on (config.md §5: unused fields are never checked).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoBatchDoc {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    max_bath_bytes: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    do_batch_threshold_bytes: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    max_batch_messages_number: Option<i64>,
    encode_worker_threads: Option<Value>,
    max_encode_worker_for_each_broker: Option<Value>,
    batch_wait_mills: Option<Value>,
    max_continuously_running_mills: Option<Value>,
}

impl AutoBatchConfiguration {
    /// Reads `autoBatch`; the checks of config.md apply only when `useAutoBatch` is on.
    fn from_doc(doc: Option<AutoBatchDoc>, checked: bool) -> Result<Self, ConfigError> {
        let d = AutoBatchConfiguration::default();
        let Some(doc) = doc else {
            return Ok(d);
        };
        let a = AutoBatchConfiguration {
            max_bath_bytes: doc.max_bath_bytes.unwrap_or(d.max_bath_bytes),
            do_batch_threshold_bytes: doc
                .do_batch_threshold_bytes
                .unwrap_or(d.do_batch_threshold_bytes),
            max_batch_messages_number: doc
                .max_batch_messages_number
                .unwrap_or(d.max_batch_messages_number),
        };
        if !checked {
            return Ok(a);
        }
        // The keys that have no effect in pproxy are still checked, as the console expects.
        for (key, value, default, min) in [
            ("encodeWorkerThreads", &doc.encode_worker_threads, 4, 1),
            (
                "maxEncodeWorkerForEachBroker",
                &doc.max_encode_worker_for_each_broker,
                1,
                1,
            ),
            ("batchWaitMills", &doc.batch_wait_mills, 5, 0),
            (
                "maxContinuouslyRunningMills",
                &doc.max_continuously_running_mills,
                50,
                1,
            ),
        ] {
            let n = match value {
                None => default,
                Some(v) => lenient::int_of(v).ok_or_else(|| {
                    ConfigError::Invalid(format!("`autoBatch.{key}` must be an integer"))
                })?,
            };
            if n < min {
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

/// `TopicConfig`. Read it with `TopicConfig::parse` (or as part of a document), which also
/// settles its name and its retry interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// Topic name.
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
    /// Units.
    pub topic_units: Vec<TopicUnit>,
    /// Delay topic flag.
    #[serde(deserialize_with = "lenient::boolean")]
    pub delay_topic: bool,
    /// Auto-batch eligibility.
    #[serde(deserialize_with = "lenient::boolean")]
    pub auto_batch: bool,
    /// No broker fail-over on retries.
    #[serde(deserialize_with = "lenient::boolean")]
    pub strong_order: bool,
    /// Limiter retry interval, ms (-1 derive, 0 none).
    #[serde(deserialize_with = "lenient::int")]
    pub limiter_failure_retry_interval: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            topic: String::new(),
            topic_units: Vec::new(),
            delay_topic: false,
            auto_batch: false,
            strong_order: false,
            limiter_failure_retry_interval: -1,
        }
    }
}

/// `TopicConfiguration`: one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicUnit {
    /// Broker cluster.
    #[serde(deserialize_with = "lenient::string")]
    pub broker_cluster: String,
    /// Proxy cluster -> nodes.
    #[serde(deserialize_with = "lenient::proxies")]
    pub proxies: BTreeMap<String, BTreeSet<String>>,
    /// This node's share of the topic limit.
    #[serde(deserialize_with = "lenient::int")]
    pub max_tps: i64,
}

impl Default for TopicUnit {
    fn default() -> Self {
        TopicUnit {
            broker_cluster: String::new(),
            proxies: BTreeMap::new(),
            max_tps: 1024,
        }
    }
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
        let k: KafkaConfiguration = lenient::from_value(Value::Object(o.clone()))?;
        k.check()?;
        Ok(k)
    }

    /// The checks of config.md §5 (absent values took their defaults).
    fn check(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Invalid(
                "`bootstrapServers` must be non-empty".into(),
            ));
        }
        if self.retries < 0 {
            return Err(ConfigError::Invalid("`retries` must be >= 0".into()));
        }
        positive("batchSize", self.batch_size)?;
        positive("retryBackoff", self.retry_backoff)?;
        positive("metadataMaxAge", self.metadata_max_age)?;
        positive("metadataFetchTimeout", self.metadata_fetch_timeout)?;
        positive("ackTimeout", self.ack_timeout)?;
        positive("bufferMemory", self.buffer_memory)?;
        Ok(())
    }
}

impl RocketmqConfiguration {
    /// Parses and checks one RocketMQ cluster.
    pub fn parse(o: &Obj) -> Result<Self, ConfigError> {
        let r: RocketmqConfiguration = lenient::from_value(Value::Object(o.clone()))?;
        r.check()?;
        Ok(r)
    }

    /// The checks of config.md §5.
    fn check(&self) -> Result<(), ConfigError> {
        if self.namesrv_addrs.is_empty() {
            return Err(ConfigError::Invalid(
                "`namesrvAddrs` must be non-empty".into(),
            ));
        }
        positive(
            "compressMsgBodyOverHowmuch",
            self.compress_msg_body_over_howmuch,
        )?;
        positive("maxMessageSize", self.max_message_size)?;
        positive("pollNameServerInterval", self.poll_name_server_interval)?;
        positive("heartbeatBrokerInterval", self.heartbeat_broker_interval)?;
        Ok(())
    }
}

impl TopicConfig {
    /// Parses a TopicConfig; `name` (the ZooKeeper node name) wins over the `topic` key.
    pub fn parse(o: &Obj, name: Option<&str>) -> Result<Self, ConfigError> {
        let mut o = o.clone();
        if name.is_some() {
            // The node name is authoritative: the `topic` key is then unused and unchecked.
            o.remove("topic");
        }
        lenient::from_value::<TopicConfig>(Value::Object(o))?.settle(name)
    }

    /// Applies the name rule and reads any negative retry interval as -1.
    fn settle(mut self, name: Option<&str>) -> Result<Self, ConfigError> {
        match name {
            Some(n) => self.topic = n.to_string(),
            None if self.topic.is_empty() => {
                return Err(ConfigError::Invalid("topic without a name".into()))
            }
            None => {}
        }
        self.limiter_failure_retry_interval = self.limiter_failure_retry_interval.max(-1);
        Ok(self)
    }
}

/// `TopicInfoConfiguration`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct TopicInfoDoc {
    topics: Vec<TopicConfig>,
}

impl TopicInfoDoc {
    fn settle(self) -> Result<Vec<TopicConfig>, ConfigError> {
        self.topics.into_iter().map(|t| t.settle(None)).collect()
    }
}

/// Parses the `defaultTopicInfoConf` of carrera.yaml (already converted to JSON).
pub fn parse_topic_info(v: &Value) -> Result<Vec<TopicConfig>, ConfigError> {
    if !v.is_object() {
        return Ok(Vec::new());
    }
    lenient::from_value::<TopicInfoDoc>(v.clone())?.settle()
}

/// `PProxyConfig` as written.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ProxyDoc {
    #[serde(deserialize_with = "lenient::opt_string")]
    instance: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    proxy_cluster: Option<String>,
    broker_clusters: Vec<String>,
    topics: BTreeSet<String>,
    carrera_configuration: Option<CarreraDoc>,
}

/// `CarreraConfiguration` as written; `Default` holds the defaults of config.md §5.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CarreraDoc {
    #[serde(deserialize_with = "lenient::boolean")]
    use_kafka: bool,
    #[serde(deserialize_with = "lenient::boolean")]
    use_rocketmq: bool,
    #[serde(deserialize_with = "lenient::int")]
    kafka_producers: i64,
    #[serde(deserialize_with = "lenient::int")]
    rocketmq_producers: i64,
    kafka_configuration_map: BTreeMap<String, KafkaConfiguration>,
    rocketmq_configuration_map: BTreeMap<String, RocketmqConfiguration>,
    #[serde(deserialize_with = "lenient::boolean")]
    use_request_limiter: bool,
    #[serde(deserialize_with = "lenient::int")]
    max_tps: i64,
    #[serde(deserialize_with = "lenient::float")]
    tps_warning_ratio: f64,
    #[serde(deserialize_with = "lenient::int")]
    limiter_failure_retry_queue_size: i64,
    #[serde(deserialize_with = "lenient::boolean")]
    use_auto_batch: bool,
    auto_batch: Option<AutoBatchDoc>,
    thrift_server: ThriftServerDoc,
    delay: DelayDoc,
    #[serde(deserialize_with = "lenient::boolean")]
    warm_up_connection: bool,
    #[serde(deserialize_with = "lenient::boolean")]
    warm_up_fetch_topic_route_info: bool,
    default_topic_info_conf: TopicInfoDoc,
}

impl Default for CarreraDoc {
    fn default() -> Self {
        CarreraDoc {
            use_kafka: false,
            use_rocketmq: false,
            kafka_producers: 0,
            rocketmq_producers: 0,
            kafka_configuration_map: BTreeMap::new(),
            rocketmq_configuration_map: BTreeMap::new(),
            use_request_limiter: false,
            max_tps: 100_000,
            tps_warning_ratio: 0.9,
            limiter_failure_retry_queue_size: 1024,
            use_auto_batch: false,
            auto_batch: None,
            thrift_server: ThriftServerDoc::default(),
            delay: DelayDoc::default(),
            warm_up_connection: false,
            warm_up_fetch_topic_route_info: true,
            default_topic_info_conf: TopicInfoDoc::default(),
        }
    }
}

/// `ThriftServerConfiguration`: only `maxReadBufferBytes` is used.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ThriftServerDoc {
    #[serde(deserialize_with = "lenient::int")]
    max_read_buffer_bytes: i64,
}

impl Default for ThriftServerDoc {
    fn default() -> Self {
        ThriftServerDoc {
            max_read_buffer_bytes: 5_000_000,
        }
    }
}

/// `DelayConfiguration`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DelayDoc {
    #[serde(deserialize_with = "lenient::string")]
    chronos_inner_topic_prefix: String,
    #[serde(deserialize_with = "lenient::int")]
    inner_topic_num: i64,
}

impl Default for DelayDoc {
    fn default() -> Self {
        DelayDoc {
            chronos_inner_topic_prefix: String::new(),
            inner_topic_num: 1,
        }
    }
}

impl ProxyConfig {
    /// Parses and validates a PProxyConfig document. `zk_mode` adds the ZooKeeper-only checks.
    pub fn parse(text: &str, zk_mode: bool) -> Result<Self, ConfigError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Invalid(format!("JSON: {e}")))?;
        if !v.is_object() {
            return Err(ConfigError::Invalid(
                "PProxyConfig must be an object".into(),
            ));
        }
        let doc: ProxyDoc = lenient::from_value(v)?;
        if zk_mode
            && (doc.instance.as_deref().unwrap_or("").is_empty()
                || doc.proxy_cluster.as_deref().unwrap_or("").is_empty())
        {
            return Err(ConfigError::Invalid(
                "`instance` and `proxyCluster` must be non-empty".into(),
            ));
        }
        if doc.broker_clusters.is_empty() {
            return Err(ConfigError::Invalid(
                "`brokerClusters` must be non-empty".into(),
            ));
        }
        let c = doc
            .carrera_configuration
            .ok_or_else(|| ConfigError::Invalid("`carreraConfiguration` is required".into()))?;
        let carrera = CarreraConfiguration::from_doc(c, &doc.broker_clusters)?;
        Ok(ProxyConfig {
            instance: doc.instance,
            proxy_cluster: doc.proxy_cluster,
            broker_clusters: doc.broker_clusters,
            topics: doc.topics,
            carrera,
        })
    }
}

impl CarreraConfiguration {
    fn from_doc(c: CarreraDoc, broker_clusters: &[String]) -> Result<Self, ConfigError> {
        for (name, k) in &c.kafka_configuration_map {
            k.check()
                .map_err(|e| ConfigError::Invalid(format!("kafka cluster {name}: {e}")))?;
        }
        for (name, r) in &c.rocketmq_configuration_map {
            r.check()
                .map_err(|e| ConfigError::Invalid(format!("rocketmq cluster {name}: {e}")))?;
        }
        let (kafka, rocketmq) = (c.kafka_configuration_map, c.rocketmq_configuration_map);
        if c.use_kafka && kafka.is_empty() {
            return Err(ConfigError::Invalid(
                "`kafkaConfigurationMap` must be non-empty when useKafka".into(),
            ));
        }
        if c.use_rocketmq && rocketmq.is_empty() {
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
        let max_tps = positive("maxTps", c.max_tps)?;
        let ratio = c.tps_warning_ratio;
        if ratio <= 0.0 || ratio.is_nan() {
            return Err(ConfigError::Invalid("`tpsWarningRatio` must be > 0".into()));
        }
        let max_read_buffer_bytes =
            positive("maxReadBufferBytes", c.thrift_server.max_read_buffer_bytes)?;
        let auto_batch = AutoBatchConfiguration::from_doc(c.auto_batch, c.use_auto_batch)?;
        Ok(CarreraConfiguration {
            use_kafka: c.use_kafka,
            use_rocketmq: c.use_rocketmq,
            kafka_producers: c.kafka_producers.max(1) as usize,
            rocketmq_producers: c.rocketmq_producers.max(1) as usize,
            kafka,
            rocketmq,
            use_request_limiter: c.use_request_limiter,
            max_tps,
            tps_warning_ratio: ratio.min(1.0),
            limiter_failure_retry_queue_size: c.limiter_failure_retry_queue_size,
            use_auto_batch: c.use_auto_batch,
            auto_batch,
            max_read_buffer_bytes: max_read_buffer_bytes as usize,
            inner_topic_prefix: c.delay.chronos_inner_topic_prefix,
            inner_topic_num: c.delay.inner_topic_num.max(1),
            warm_up_connection: c.warm_up_connection,
            warm_up_fetch_topic_route_info: c.warm_up_fetch_topic_route_info,
            default_topics: c.default_topic_info_conf.settle()?,
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
    fn topic_documents_keep_their_leniency() {
        let doc = serde_json::json!({
            "topic": {"not": "a name"}, "delayTopic": "true", "limiterFailureRetryInterval": "-7",
            "compressType": 5, "alarmGroup": null,
            "topicUnits": [{"brokerCluster": "K", "maxTps": "300.0", "totalMaxTps": "x",
                            "proxies": {"P": ["n:1", 7], "Q": null}}]
        });
        let t = TopicConfig::parse(doc.as_object().unwrap(), Some("t")).unwrap();
        assert_eq!(t.topic, "t");
        assert!(t.delay_topic);
        assert_eq!(t.limiter_failure_retry_interval, -1);
        assert_eq!(t.topic_units[0].max_tps, 300);
        assert!(t.topic_units[0].lists("n:1"));
        let e = TopicConfig::parse(doc.as_object().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("`topic`"), "{e}");
        // autoBatch keys without effect are checked only when useAutoBatch is on.
        let doc = |on: bool| {
            format!(
                r#"{{"brokerClusters":["a"],"carreraConfiguration":{{"useAutoBatch":{on},
                "autoBatch":{{"encodeWorkerThreads":"many","maxBathBytes":"8192"}}}}}}"#
            )
        };
        let p = ProxyConfig::parse(&doc(false), false).unwrap();
        assert_eq!(p.carrera.auto_batch.max_bath_bytes, 8192);
        let e = ProxyConfig::parse(&doc(true), false).unwrap_err();
        assert!(
            e.to_string().contains("autoBatch.encodeWorkerThreads"),
            "{e}"
        );
        let bad = serde_json::json!({"topicUnits": [{"proxies": {"P": 7}}]});
        let e = TopicConfig::parse(bad.as_object().unwrap(), Some("t")).unwrap_err();
        assert!(e.to_string().contains("topicUnits[0].proxies"), "{e}");
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
