//! `carrera.yaml`: the node-local bootstrap file (config.md §2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The whole `carrera.yaml`, defaults filled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// ZooKeeper connect string.
    pub zookeeper_addr: Option<String>,
    /// Own address (node name host part).
    pub host: Option<String>,
    /// Thrift port.
    pub port: u16,
    /// Static topics (raw; parsed with the DDMQ model).
    pub default_topic_info_conf: Option<serde_json::Value>,
    /// Local proxy-config JSON path.
    pub local_config: Option<PathBuf>,
    /// In-process Kafka-protocol cluster.
    pub embedded_kafka: bool,
    /// Mock brokers.
    pub embedded_kafka_brokers: i32,
    /// Partitions of auto-created topics.
    pub embedded_kafka_partitions: i32,
    /// Delay topics in embedded auto-admit mode.
    pub embedded_delay_topics: Vec<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Admin HTTP port, 0 disables.
    pub admin_port: u16,
    /// Raw librdkafka properties per cluster or `*`.
    pub kafka_overrides: BTreeMap<String, BTreeMap<String, String>>,
    /// `server.*`.
    pub server: ServerSettings,
    /// `forwarding.*`.
    pub forwarding: ForwardingSettings,
    /// `logging.*`.
    pub logging: LoggingSettings,
    /// `scheduler.*` (delay.md §7).
    pub scheduler: SchedulerSettings,
    /// `zk.*`.
    pub zk: ZkSettings,
    /// `tls.*`: TLS on the Thrift port (and the admin port with `server.adminTls`).
    pub tls: TlsSettings,
    /// `acl.*`: which clients may write which topics.
    pub acl: AclSettings,
}

/// `tls.*` keys (docs/SECURITY.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsSettings {
    /// Server certificate chain, PEM; TLS is on when this and `keyFile` are set.
    pub cert_file: Option<PathBuf>,
    /// Private key of the certificate, PEM.
    pub key_file: Option<PathBuf>,
    /// CA bundle, PEM, that client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// With `clientCaFile`: refuse clients that present no certificate.
    pub require_client_cert: bool,
    /// Refuse plaintext Thrift connections (only TLS is served).
    pub required: bool,
}

impl TlsSettings {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// `acl.*` keys (docs/SECURITY.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AclSettings {
    /// Off (the default): every client may do everything, as without ACLs.
    pub enabled: bool,
    /// The principals a client can be; the first that matches a connection is used.
    pub principals: Vec<PrincipalSettings>,
}

/// One principal of `acl.principals`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrincipalSettings {
    /// Name, recorded with the delay messages it adds.
    pub name: String,
    /// Client addresses, CIDR or single IPs; empty = any address.
    pub addresses: Vec<String>,
    /// Certificate subjects (`CN=a,O=b`); empty = no certificate needed.
    pub subjects: Vec<String>,
    /// Topics it may write: names, `prefix*`, or `*`.
    pub topics: Vec<String>,
    /// Whether it may use sendDelaySync on those topics.
    pub delay: bool,
}

/// `zk.*` keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ZkSettings {
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Wait for ZooKeeper at start before using the cache.
    pub startup_wait_ms: u64,
    /// Periodic full re-read.
    pub resync_interval_sec: u64,
}

impl Default for ZkSettings {
    fn default() -> Self {
        ZkSettings {
            session_timeout_ms: 30_000,
            startup_wait_ms: 15_000,
            resync_interval_sec: 300,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            zookeeper_addr: None,
            host: None,
            port: 9613,
            default_topic_info_conf: None,
            local_config: None,
            embedded_kafka: false,
            embedded_kafka_brokers: 1,
            embedded_kafka_partitions: 4,
            embedded_delay_topics: Vec::new(),
            data_dir: PathBuf::from("data"),
            admin_port: 9614,
            kafka_overrides: BTreeMap::new(),
            server: ServerSettings::default(),
            forwarding: ForwardingSettings::default(),
            logging: LoggingSettings::default(),
            scheduler: SchedulerSettings::default(),
            zk: ZkSettings::default(),
            tls: TlsSettings::default(),
            acl: AclSettings::default(),
        }
    }
}

/// `server.*` keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerSettings {
    /// Thrift listen address.
    pub bind_addr: String,
    /// Admin listen address.
    pub admin_bind_addr: String,
    /// Listen backlog.
    pub listen_backlog: u32,
    /// Connection cap.
    pub max_connections: usize,
    /// Read back-pressure budget in bytes.
    pub max_inflight_bytes: usize,
    /// Requests in progress above which new ones get 15.
    pub max_inflight_requests: usize,
    /// Idle close, 0 = never.
    pub idle_timeout_sec: u64,
    /// Graceful drain bound.
    pub shutdown_drain_ms: u64,
    /// A started frame must be complete within this time, or the connection is closed.
    pub frame_read_timeout_ms: u64,
    /// A reply must be written within this time, or the connection is closed (a peer that
    /// stopped reading); 0 = never.
    pub write_timeout_ms: u64,
    /// POST admin endpoints only from loopback.
    pub admin_mutations_loopback_only: bool,
    /// Bearer token the POST admin endpoints require; empty = none.
    pub admin_token: String,
    /// Require `adminToken` on every admin endpoint but `/health` and `/ready`.
    pub admin_token_for_reads: bool,
    /// Serve TLS on the admin port too (certificate of `tls.*`); plaintext then only from loopback.
    pub admin_tls: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind_addr: "0.0.0.0".into(),
            admin_bind_addr: "0.0.0.0".into(),
            listen_backlog: 1024,
            max_connections: 20_000,
            max_inflight_bytes: 268_435_456,
            max_inflight_requests: 100_000,
            idle_timeout_sec: 0,
            shutdown_drain_ms: 10_000,
            frame_read_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            admin_mutations_loopback_only: true,
            admin_token: String::new(),
            admin_token_for_reads: false,
            admin_tls: false,
        }
    }
}

/// `forwarding.*` keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ForwardingSettings {
    /// Deadline for `timeout <= 0`.
    pub default_timeout_ms: u64,
    /// Cap on client timeouts.
    pub max_timeout_ms: u64,
    /// sendAsync / sendBatchSync deadline.
    pub async_timeout_ms: u64,
    /// Broker attempts per message.
    pub max_attempts: u32,
    /// First retry backoff.
    pub retry_backoff_ms: u64,
    /// Retry backoff cap.
    pub retry_backoff_max_ms: u64,
    /// No retry with less time left.
    pub min_retry_window_ms: u64,
    /// RocketMQ broker fault avoidance.
    pub broker_fault_backoff_ms: u64,
    /// librdkafka linger.ms.
    pub kafka_linger_ms: u64,
    /// librdkafka message.timeout.ms.
    pub kafka_message_timeout_ms: u64,
    /// Warm-up bound.
    pub warm_up_timeout_ms: u64,
    /// Producer flush bound at shutdown.
    pub producer_flush_timeout_ms: u64,
    /// RocketMQ: concurrent single messages to one queue share a request while its lane is busy,
    /// for every topic (auto-batch topics keep their own bounds).
    pub rocketmq_coalesce: bool,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        ForwardingSettings {
            default_timeout_ms: 3000,
            max_timeout_ms: 60_000,
            async_timeout_ms: 10_000,
            max_attempts: 3,
            retry_backoff_ms: 5,
            retry_backoff_max_ms: 100,
            min_retry_window_ms: 5,
            broker_fault_backoff_ms: 3000,
            kafka_linger_ms: 0,
            kafka_message_timeout_ms: 10_000,
            warm_up_timeout_ms: 10_000,
            producer_flush_timeout_ms: 5000,
            rocketmq_coalesce: true,
        }
    }
}

/// `logging.*` keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoggingSettings {
    /// Log directory.
    pub dir: PathBuf,
    /// Filter.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// One line per request in `access.log`.
    pub access_log: bool,
    /// Rotated files older than this are deleted.
    pub retain_hours: u64,
    /// Failure lines per result code per second; more are counted, not written.
    pub failure_logs_per_sec: u32,
    /// A log file is also rotated when it reaches this size, MiB.
    pub max_file_mb: u64,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            dir: PathBuf::from("logs"),
            level: "info".into(),
            format: "text".into(),
            access_log: false,
            retain_hours: 168,
            failure_logs_per_sec: 100,
            max_file_mb: 100,
        }
    }
}

/// `scheduler.*` keys (delay.md §7).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SchedulerSettings {
    /// First-fire horizon, seconds (code 33).
    pub max_delay_seconds: i64,
    /// `skip` or `all`.
    pub loop_catch_up: String,
    /// Catch-up bound per loop (`all`).
    pub loop_catch_up_max: i64,
    /// Lateness tolerated before skipping, ms.
    pub late_tolerance_ms: i64,
    /// Near window, ms.
    pub near_window_ms: i64,
    /// Records held in memory.
    pub max_loaded: usize,
    /// Records per loader step.
    pub fire_batch_size: usize,
    /// Fires in flight.
    pub fire_concurrency: usize,
    /// Fire pacing, 0 = unlimited.
    pub fire_max_tps: u64,
    /// Deadline of one fire attempt, ms.
    pub fire_timeout_ms: u64,
    /// First retry backoff, ms.
    pub fire_retry_initial_ms: i64,
    /// Retry backoff cap, ms.
    pub fire_retry_max_ms: i64,
    /// Retry budget after the due time, s.
    pub fire_retry_budget_sec: i64,
    /// Finished-id retention, s.
    pub done_retention_sec: i64,
    /// Dead-letter retention, s.
    pub dead_retention_sec: i64,
    /// Pending cap, 0 = none.
    pub max_pending: u64,
    /// Mutations per group commit.
    pub max_commit_group: usize,
    /// A delay-store commit in flight longer than this marks the store stuck, ms (0 = never).
    pub store_stuck_after_ms: i64,
    /// Store cache (sled page cache or redb page cache), MiB.
    pub store_cache_mb: u64,
    /// Engine of a new delay store: `redb` (default) or `sled` (`fjall` was removed in issue 17
    /// and is refused). A data directory that already holds a store keeps its engine; one
    /// written by fjall is refused at start (docs/DECISIONS.md, "Delay store engine").
    pub store_engine: String,
    /// Cluster mode (delay.md §10); off by default. Needs a restart to change.
    pub cluster: ClusterSettings,
}

/// `scheduler.cluster.*`: the journal and ownership of cluster mode (docs/CLUSTER.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSettings {
    /// Cluster mode on.
    pub enabled: bool,
    /// Kafka cluster (a name from the proxy's configuration) holding the journal.
    pub journal_cluster: String,
    /// Journal topic; blank = `<chronosInnerTopicPrefix>journal`.
    pub journal_topic: String,
    /// Partitions of the journal when pproxy creates it.
    pub journal_partitions: i32,
    /// Replication factor when pproxy creates it; -1 = the broker's default.
    pub journal_replication: i32,
    /// Consumer-group session timeout, ms: how long a dead node keeps its partitions.
    pub session_timeout_ms: u64,
    /// Consumer-group heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Consumer group; blank = `pproxy-scheduler-<proxyCluster>`.
    pub group: String,
    /// Name of this node in claims and status answers; blank = `<host>:<port>`.
    pub node_name: String,
    /// Address other nodes use to reach this node's admin HTTP; blank = `127.0.0.1:<adminPort>`
    /// when the admin port listens on loopback or all addresses, else `<adminBindAddr>:<adminPort>`.
    pub advertised_admin: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            enabled: false,
            journal_cluster: String::new(),
            journal_topic: String::new(),
            journal_partitions: 12,
            journal_replication: -1,
            session_timeout_ms: 6000,
            heartbeat_ms: 1000,
            group: String::new(),
            node_name: String::new(),
            advertised_admin: String::new(),
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_delay_seconds: 5_356_800,
            loop_catch_up: "skip".into(),
            loop_catch_up_max: 100,
            late_tolerance_ms: 1000,
            near_window_ms: 60_000,
            max_loaded: 500_000,
            fire_batch_size: 256,
            fire_concurrency: 256,
            fire_max_tps: 0,
            fire_timeout_ms: 10_000,
            fire_retry_initial_ms: 100,
            fire_retry_max_ms: 30_000,
            fire_retry_budget_sec: 3600,
            done_retention_sec: 3600,
            dead_retention_sec: 604_800,
            max_pending: 0,
            max_commit_group: 4096,
            store_stuck_after_ms: 5000,
            store_cache_mb: 128,
            store_engine: "redb".into(),
            cluster: ClusterSettings::default(),
        }
    }
}

impl SchedulerSettings {
    /// The scheduler crate's configuration.
    pub fn to_config(&self) -> scheduler::Config {
        scheduler::Config {
            near_window_ms: self.near_window_ms.max(10),
            max_loaded: self.max_loaded.max(1),
            fire_batch_size: self.fire_batch_size.max(1),
            fire_concurrency: self.fire_concurrency.max(1),
            fire_retry_initial_ms: self.fire_retry_initial_ms.max(1),
            fire_retry_max_ms: self.fire_retry_max_ms.max(1),
            fire_retry_budget_sec: self.fire_retry_budget_sec.max(0),
            done_retention_sec: self.done_retention_sec.max(0),
            dead_retention_sec: self.dead_retention_sec.max(0),
            max_pending: self.max_pending,
            max_commit_group: self.max_commit_group.max(1),
            catch_up: scheduler::CatchUp {
                skip: self.loop_catch_up != "all",
                late_tolerance_ms: self.late_tolerance_ms.max(0),
                max_catch_up: self.loop_catch_up_max.clamp(0, i64::from(u32::MAX)) as u32,
            },
            cache_bytes: self.store_cache_mb.max(1) << 20,
            // Checked by `Settings::parse`: an unknown name never gets this far.
            engine: scheduler::EngineKind::parse(&self.store_engine).unwrap_or_default(),
            fire_max_tps: self.fire_max_tps,
            stuck_after_ms: self.store_stuck_after_ms.max(0),
        }
    }
}

const KNOWN_KEYS: &[&str] = &[
    "zookeeperAddr",
    "host",
    "port",
    "defaultTopicInfoConf",
    "localConfig",
    "embeddedKafka",
    "embeddedKafkaBrokers",
    "embeddedKafkaPartitions",
    "embeddedDelayTopics",
    "dataDir",
    "adminPort",
    "kafkaOverrides",
    "server",
    "forwarding",
    "zk",
    "scheduler",
    "logging",
    "tls",
    "acl",
];

/// How the proxy config is obtained (config.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// ZooKeeper documents.
    ZooKeeper,
    /// Local JSON file.
    Local(PathBuf),
    /// Synthesized config over the in-process mock cluster.
    Embedded,
}

impl Settings {
    /// Parses carrera.yaml text; returns the settings and the unknown top-level keys.
    pub fn parse(text: &str) -> Result<(Settings, Vec<String>), ConfigError> {
        let raw: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid(format!("YAML: {e}")))?;
        let unknown = match &raw {
            serde_yaml::Value::Mapping(m) => m
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| !KNOWN_KEYS.contains(k))
                .map(str::to_string)
                .collect(),
            serde_yaml::Value::Null => Vec::new(),
            _ => return Err(ConfigError::Invalid("carrera.yaml must be a map".into())),
        };
        let s: Settings = if raw.is_null() {
            Settings::default()
        } else {
            serde_yaml::from_value(raw).map_err(|e| ConfigError::Invalid(format!("YAML: {e}")))?
        };
        if s.port == 0 {
            return Err(ConfigError::Invalid("`port` must be > 0".into()));
        }
        if scheduler::EngineKind::parse(&s.scheduler.store_engine).is_none() {
            return Err(ConfigError::Invalid(format!(
                "`scheduler.storeEngine` must be redb or sled, not {:?}",
                s.scheduler.store_engine
            )));
        }
        Ok((s, unknown))
    }

    /// Reads and parses a carrera.yaml file.
    pub fn load(path: &Path) -> Result<(Settings, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// The mode these settings select, with the precedence of config.md §1.
    pub fn mode(&self) -> Mode {
        if let Some(p) = &self.local_config {
            Mode::Local(p.clone())
        } else if self.embedded_kafka || self.zookeeper_addr.is_none() {
            Mode::Embedded
        } else {
            Mode::ZooKeeper
        }
    }

    /// This node's name, `"<host>:<port>"`.
    pub fn node_name(&self) -> String {
        let host = self.host.clone().unwrap_or_else(first_ipv4);
        format!("{host}:{}", self.port)
    }
}

/// First non-loopback IPv4 address of the host in interface order, or 127.0.0.1.
fn first_ipv4() -> String {
    let mut found = None;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we only read and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) == 0 {
            let mut cur = ifap;
            while !cur.is_null() && found.is_none() {
                let addr = (*cur).ifa_addr;
                if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                    let sin = &*(addr as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    if !ip.is_loopback() && !ip.is_unspecified() {
                        found = Some(ip.to_string());
                    }
                }
                cur = (*cur).ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
    }
    found.unwrap_or_else(|| "127.0.0.1".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_embedded_default() {
        let (s, unknown) = Settings::parse("").unwrap();
        assert_eq!(s.port, 9613);
        assert_eq!(s.admin_port, 9614);
        assert_eq!(s.mode(), Mode::Embedded);
        assert!(unknown.is_empty());
    }

    #[test]
    fn store_engine_is_redb_by_default_and_checked() {
        let (s, _) = Settings::parse("").unwrap();
        assert_eq!(s.scheduler.to_config().engine, scheduler::EngineKind::Redb);
        let (s, _) = Settings::parse("scheduler:\n  storeEngine: sled\n").unwrap();
        assert_eq!(s.scheduler.to_config().engine, scheduler::EngineKind::Sled);
        let (s, _) = Settings::parse("scheduler:\n  storeEngine: redb\n").unwrap();
        assert_eq!(s.scheduler.to_config().engine, scheduler::EngineKind::Redb);
        let err = Settings::parse("scheduler:\n  storeEngine: rocksdb\n").unwrap_err();
        assert!(err.to_string().contains("storeEngine"), "{err}");
        // fjall was removed (issue 17): refused like any unknown engine, naming the allowed ones.
        let err = Settings::parse("scheduler:\n  storeEngine: fjall\n").unwrap_err();
        assert!(err.to_string().contains("redb or sled"), "{err}");
    }

    #[test]
    fn mode_precedence_and_unknown_keys() {
        let (s, unknown) = Settings::parse(
            "zookeeperAddr: a:2181\nlocalConfig: x.json\nbogus: 1\nforwarding:\n  defaultTimeoutMs: 7\n",
        )
        .unwrap();
        assert_eq!(s.mode(), Mode::Local(PathBuf::from("x.json")));
        assert_eq!(unknown, vec!["bogus".to_string()]);
        assert_eq!(s.forwarding.default_timeout_ms, 7);
        let (s, _) = Settings::parse("zookeeperAddr: a:2181\n").unwrap();
        assert_eq!(s.mode(), Mode::ZooKeeper);
        let (s, _) = Settings::parse("zookeeperAddr: a:2181\nembeddedKafka: true\n").unwrap();
        assert_eq!(s.mode(), Mode::Embedded);
    }
}
