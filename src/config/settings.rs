//! `carrera.yaml`: the node-local bootstrap file (config.md §2).
//!
//! Every key is typed: fixed sets of values are enums, addresses are `IpAddr`, durations are
//! `Duration` read in the unit the key's name says (`crate::config::duration`), and a blank
//! optional string is `None`. Serde does the checking: a wrong value fails with the key's path
//! and what was expected, and unknown keys come back from `Settings::parse` with their paths.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer, Error as _, IntoDeserializer};
use serde::{Deserialize, Serialize};

use super::duration::{self, as_ms_i64, as_secs_i64, from_ms_i64, from_secs_i64};
use super::ConfigError;

/// The whole `carrera.yaml`, defaults filled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// ZooKeeper connect string; blank = none.
    #[serde(deserialize_with = "blank_none")]
    pub zookeeper_addr: Option<String>,
    /// Own address (node name host part); blank = the first non-loopback IPv4.
    #[serde(deserialize_with = "blank_none")]
    pub host: Option<String>,
    /// Thrift port.
    pub port: u16,
    /// Static topics (raw; parsed with the DDMQ model).
    pub default_topic_info_conf: Option<serde_json::Value>,
    /// Local proxy-config JSON path; blank = none.
    #[serde(deserialize_with = "blank_none")]
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
    #[serde(deserialize_with = "blank_none")]
    pub cert_file: Option<PathBuf>,
    /// Private key of the certificate, PEM.
    #[serde(deserialize_with = "blank_none")]
    pub key_file: Option<PathBuf>,
    /// CA bundle, PEM, that client certificates are verified against.
    #[serde(deserialize_with = "blank_none")]
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
    /// Session timeout (`sessionTimeoutMs`).
    #[serde(with = "duration::ms")]
    pub session_timeout_ms: Duration,
    /// Wait for ZooKeeper at start before using the cache (`startupWaitMs`).
    #[serde(with = "duration::ms")]
    pub startup_wait_ms: Duration,
    /// Periodic full re-read (`resyncIntervalSec`).
    #[serde(with = "duration::secs")]
    pub resync_interval_sec: Duration,
}

impl Default for ZkSettings {
    fn default() -> Self {
        ZkSettings {
            session_timeout_ms: Duration::from_secs(30),
            startup_wait_ms: Duration::from_secs(15),
            resync_interval_sec: Duration::from_secs(300),
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
    #[serde(deserialize_with = "ip_addr")]
    pub bind_addr: IpAddr,
    /// Admin listen address.
    #[serde(deserialize_with = "ip_addr")]
    pub admin_bind_addr: IpAddr,
    /// Listen backlog.
    pub listen_backlog: u32,
    /// Connection cap.
    pub max_connections: usize,
    /// Read back-pressure budget in bytes.
    pub max_inflight_bytes: usize,
    /// Requests in progress above which new ones get 15.
    pub max_inflight_requests: usize,
    /// Idle close (`idleTimeoutSec`), zero = never.
    #[serde(with = "duration::secs")]
    pub idle_timeout_sec: Duration,
    /// Graceful drain bound (`shutdownDrainMs`).
    #[serde(with = "duration::ms")]
    pub shutdown_drain_ms: Duration,
    /// A started frame must be complete within this time, or the connection is closed.
    #[serde(with = "duration::ms")]
    pub frame_read_timeout_ms: Duration,
    /// A reply must be written within this time, or the connection is closed (a peer that
    /// stopped reading); zero = never.
    #[serde(with = "duration::ms")]
    pub write_timeout_ms: Duration,
    /// POST admin endpoints only from loopback.
    pub admin_mutations_loopback_only: bool,
    /// Bearer token the POST admin endpoints require; blank = none.
    #[serde(deserialize_with = "empty_none")]
    pub admin_token: Option<String>,
    /// Require `adminToken` on every admin endpoint but `/health` and `/ready`.
    pub admin_token_for_reads: bool,
    /// Serve TLS on the admin port too (certificate of `tls.*`); plaintext then only from loopback.
    pub admin_tls: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind_addr: IpAddr::from([0, 0, 0, 0]),
            admin_bind_addr: IpAddr::from([0, 0, 0, 0]),
            listen_backlog: 1024,
            max_connections: 20_000,
            max_inflight_bytes: 268_435_456,
            max_inflight_requests: 100_000,
            idle_timeout_sec: Duration::ZERO,
            shutdown_drain_ms: Duration::from_secs(10),
            frame_read_timeout_ms: Duration::from_secs(10),
            write_timeout_ms: Duration::from_secs(10),
            admin_mutations_loopback_only: true,
            admin_token: None,
            admin_token_for_reads: false,
            admin_tls: false,
        }
    }
}

/// `forwarding.*` keys; every duration is in milliseconds in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ForwardingSettings {
    /// Deadline for `timeout <= 0`.
    #[serde(with = "duration::ms")]
    pub default_timeout_ms: Duration,
    /// Cap on client timeouts.
    #[serde(with = "duration::ms")]
    pub max_timeout_ms: Duration,
    /// sendAsync / sendBatchSync deadline.
    #[serde(with = "duration::ms")]
    pub async_timeout_ms: Duration,
    /// Broker attempts per message.
    pub max_attempts: u32,
    /// First retry backoff.
    #[serde(with = "duration::ms")]
    pub retry_backoff_ms: Duration,
    /// Retry backoff cap.
    #[serde(with = "duration::ms")]
    pub retry_backoff_max_ms: Duration,
    /// No retry with less time left.
    #[serde(with = "duration::ms")]
    pub min_retry_window_ms: Duration,
    /// RocketMQ broker fault avoidance.
    #[serde(with = "duration::ms")]
    pub broker_fault_backoff_ms: Duration,
    /// librdkafka linger.ms.
    #[serde(with = "duration::ms")]
    pub kafka_linger_ms: Duration,
    /// librdkafka message.timeout.ms.
    #[serde(with = "duration::ms")]
    pub kafka_message_timeout_ms: Duration,
    /// Warm-up bound.
    #[serde(with = "duration::ms")]
    pub warm_up_timeout_ms: Duration,
    /// Producer flush bound at shutdown.
    #[serde(with = "duration::ms")]
    pub producer_flush_timeout_ms: Duration,
    /// RocketMQ: concurrent single messages to one queue share a request while its lane is busy,
    /// for every topic (auto-batch topics keep their own bounds).
    pub rocketmq_coalesce: bool,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        let ms = Duration::from_millis;
        ForwardingSettings {
            default_timeout_ms: ms(3000),
            max_timeout_ms: ms(60_000),
            async_timeout_ms: ms(10_000),
            max_attempts: 3,
            retry_backoff_ms: ms(5),
            retry_backoff_max_ms: ms(100),
            min_retry_window_ms: ms(5),
            broker_fault_backoff_ms: ms(3000),
            kafka_linger_ms: ms(0),
            kafka_message_timeout_ms: ms(10_000),
            warm_up_timeout_ms: ms(10_000),
            producer_flush_timeout_ms: ms(5000),
            rocketmq_coalesce: true,
        }
    }
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// logfmt-like text lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// `logging.level`: a level name or `tracing` filter directives, checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogFilter(String);

/// The log levels `logging.level` accepts on their own.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

impl LogFilter {
    /// The filter text, as `EnvFilter` reads it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for LogFilter {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: String| {
            format!(
                "{why}; expected one of {} or directives like `info,pproxy::zk=debug`",
                LEVELS.join(", ")
            )
        };
        // `EnvFilter` reads a bare word as a target name, so a misspelt level (`inof`) would
        // silently hide every line: a directive without `=` must be a level.
        for d in s.split(',').map(str::trim) {
            let is_level = LEVELS.contains(&d.to_ascii_lowercase().as_str());
            if d.is_empty() || !(d.contains('=') || d.contains('[') || is_level) {
                return Err(bad(format!("invalid log filter `{s}`")));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&s)
            .map_err(|e| bad(format!("invalid log filter `{s}`: {e}")))?;
        Ok(LogFilter(s))
    }
}

impl From<LogFilter> for String {
    fn from(f: LogFilter) -> String {
        f.0
    }
}

/// `logging.*` keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoggingSettings {
    /// Log directory.
    pub dir: PathBuf,
    /// Filter.
    pub level: LogFilter,
    /// `text` or `json`.
    #[serde(deserialize_with = "choice")]
    pub format: LogFormat,
    /// One line per request in `access.log`.
    pub access_log: bool,
    /// Rotated files older than this are deleted (`retainHours`).
    #[serde(with = "duration::hours")]
    pub retain_hours: Duration,
    /// Failure lines per result code per second; more are counted, not written.
    pub failure_logs_per_sec: u32,
    /// A log file is also rotated when it reaches this size, MiB.
    pub max_file_mb: u64,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            dir: PathBuf::from("logs"),
            level: LogFilter("info".into()),
            format: LogFormat::default(),
            access_log: false,
            retain_hours: Duration::from_secs(168 * 3600),
            failure_logs_per_sec: 100,
            max_file_mb: 100,
        }
    }
}

/// `scheduler.loopCatchUp` (delay.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopCatchUp {
    /// Fire the latest overdue occurrence only.
    Skip,
    /// Fire every overdue occurrence, up to `loopCatchUpMax`.
    All,
}

/// `scheduler.*` keys (delay.md §7). The defaults of the keys the scheduler crate reads are
/// `scheduler::Config::default()`'s.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SchedulerSettings {
    /// First-fire horizon (`maxDelaySeconds`, code 33).
    #[serde(with = "duration::secs")]
    pub max_delay_seconds: Duration,
    /// `skip` or `all`.
    #[serde(deserialize_with = "choice")]
    pub loop_catch_up: LoopCatchUp,
    /// Catch-up bound per loop (`all`).
    pub loop_catch_up_max: u32,
    /// Lateness tolerated before skipping.
    #[serde(with = "duration::ms")]
    pub late_tolerance_ms: Duration,
    /// Near window.
    #[serde(with = "duration::ms")]
    pub near_window_ms: Duration,
    /// Records held in memory.
    pub max_loaded: usize,
    /// Records per loader step.
    pub fire_batch_size: usize,
    /// Fires in flight.
    pub fire_concurrency: usize,
    /// Fire pacing, 0 = unlimited.
    pub fire_max_tps: u64,
    /// Deadline of one fire attempt.
    #[serde(with = "duration::ms")]
    pub fire_timeout_ms: Duration,
    /// First retry backoff.
    #[serde(with = "duration::ms")]
    pub fire_retry_initial_ms: Duration,
    /// Retry backoff cap.
    #[serde(with = "duration::ms")]
    pub fire_retry_max_ms: Duration,
    /// Retry budget after the due time.
    #[serde(with = "duration::secs")]
    pub fire_retry_budget_sec: Duration,
    /// Finished-id retention.
    #[serde(with = "duration::secs")]
    pub done_retention_sec: Duration,
    /// Dead-letter retention.
    #[serde(with = "duration::secs")]
    pub dead_retention_sec: Duration,
    /// Pending cap, 0 = none.
    pub max_pending: u64,
    /// Mutations per group commit.
    pub max_commit_group: usize,
    /// A delay-store commit in flight longer than this marks the store stuck (zero = never).
    #[serde(with = "duration::ms")]
    pub store_stuck_after_ms: Duration,
    /// Store cache (sled page cache or redb page cache), MiB.
    pub store_cache_mb: u64,
    /// Engine of a new delay store: `redb` (default) or `sled` (`fjall` was removed in issue 17
    /// and is refused). A data directory that already holds a store keeps its engine; one
    /// written by fjall is refused at start (docs/DECISIONS.md, "Delay store engine").
    #[serde(deserialize_with = "choice")]
    pub store_engine: scheduler::EngineKind,
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
    #[serde(deserialize_with = "blank_none")]
    pub journal_topic: Option<String>,
    /// Partitions of the journal when pproxy creates it.
    pub journal_partitions: i32,
    /// Replication factor when pproxy creates it; -1 = the broker's default.
    pub journal_replication: i32,
    /// Consumer-group session timeout: how long a dead node keeps its partitions.
    #[serde(with = "duration::ms")]
    pub session_timeout_ms: Duration,
    /// Consumer-group heartbeat interval: the others learn of a departure at their next
    /// heartbeat, so it adds up to this much to every failover and handover.
    #[serde(with = "duration::ms")]
    pub heartbeat_ms: Duration,
    /// Consumer group; blank = `pproxy-scheduler-<proxyCluster>`.
    #[serde(deserialize_with = "blank_none")]
    pub group: Option<String>,
    /// Name of this node in claims and status answers; blank = `<host>:<port>`.
    #[serde(deserialize_with = "blank_none")]
    pub node_name: Option<String>,
    /// Address other nodes use to reach this node's admin HTTP; blank = `127.0.0.1:<adminPort>`
    /// when the admin port listens on loopback or all addresses, else `<adminBindAddr>:<adminPort>`.
    #[serde(deserialize_with = "blank_none")]
    pub advertised_admin: Option<String>,
    /// CA bundle, PEM, that peers' admin certificates are verified against when calls are
    /// forwarded over TLS (`server.adminTls`); blank = `tls.clientCaFile`, else the
    /// certificates of `tls.certFile`.
    #[serde(deserialize_with = "blank_none")]
    pub admin_ca_file: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            enabled: false,
            journal_cluster: String::new(),
            journal_topic: None,
            journal_partitions: 12,
            journal_replication: -1,
            session_timeout_ms: Duration::from_millis(6000),
            heartbeat_ms: Duration::from_millis(100),
            group: None,
            node_name: None,
            advertised_admin: None,
            admin_ca_file: None,
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        let c = scheduler::Config::default();
        SchedulerSettings {
            max_delay_seconds: Duration::from_secs(5_356_800),
            loop_catch_up: if c.catch_up.skip {
                LoopCatchUp::Skip
            } else {
                LoopCatchUp::All
            },
            loop_catch_up_max: c.catch_up.max_catch_up,
            late_tolerance_ms: from_ms_i64(c.catch_up.late_tolerance_ms),
            near_window_ms: from_ms_i64(c.near_window_ms),
            max_loaded: c.max_loaded,
            fire_batch_size: c.fire_batch_size,
            fire_concurrency: c.fire_concurrency,
            fire_max_tps: c.fire_max_tps,
            fire_timeout_ms: Duration::from_secs(10),
            fire_retry_initial_ms: from_ms_i64(c.fire_retry_initial_ms),
            fire_retry_max_ms: from_ms_i64(c.fire_retry_max_ms),
            fire_retry_budget_sec: from_secs_i64(c.fire_retry_budget_sec),
            done_retention_sec: from_secs_i64(c.done_retention_sec),
            dead_retention_sec: from_secs_i64(c.dead_retention_sec),
            max_pending: c.max_pending,
            max_commit_group: c.max_commit_group,
            store_stuck_after_ms: from_ms_i64(c.stuck_after_ms),
            store_cache_mb: c.cache_bytes >> 20,
            store_engine: c.engine,
            cluster: ClusterSettings::default(),
        }
    }
}

impl SchedulerSettings {
    /// The scheduler crate's configuration.
    pub fn to_config(&self) -> scheduler::Config {
        scheduler::Config {
            near_window_ms: as_ms_i64(self.near_window_ms).max(10),
            max_loaded: self.max_loaded.max(1),
            fire_batch_size: self.fire_batch_size.max(1),
            fire_concurrency: self.fire_concurrency.max(1),
            fire_retry_initial_ms: as_ms_i64(self.fire_retry_initial_ms).max(1),
            fire_retry_max_ms: as_ms_i64(self.fire_retry_max_ms).max(1),
            fire_retry_budget_sec: as_secs_i64(self.fire_retry_budget_sec),
            done_retention_sec: as_secs_i64(self.done_retention_sec),
            dead_retention_sec: as_secs_i64(self.dead_retention_sec),
            max_pending: self.max_pending,
            max_commit_group: self.max_commit_group.max(1),
            catch_up: scheduler::CatchUp {
                skip: self.loop_catch_up == LoopCatchUp::Skip,
                late_tolerance_ms: as_ms_i64(self.late_tolerance_ms),
                max_catch_up: self.loop_catch_up_max,
            },
            cache_bytes: self.store_cache_mb.clamp(1, u64::MAX >> 20) << 20,
            engine: self.store_engine,
            fire_max_tps: self.fire_max_tps,
            stuck_after_ms: as_ms_i64(self.store_stuck_after_ms),
        }
    }
}

/// A choice among fixed names (an enum with `rename_all`), matched ignoring case and
/// surrounding spaces as `storeEngine` always was; serde's error lists the allowed names.
fn choice<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    T::deserialize(s.trim().to_ascii_lowercase().into_deserializer())
}

/// An optional string or path where blank (or only spaces) means not set.
fn blank_none<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(T::from))
}

/// An optional string where only the empty string means not set (a token is used verbatim).
fn empty_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A listen address: an IP address without port.
fn ip_addr<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        D::Error::custom(format!(
            "invalid IP address `{s}`; expected an address such as 0.0.0.0, 127.0.0.1 or ::"
        ))
    })
}

/// The dotted path of an ignored key (`server.bogus`, `acl.principals[0].bogus`).
fn key_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

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
    /// Parses carrera.yaml text; returns the settings and the paths of the unknown keys
    /// (`bogus`, `server.bogus`), which are ignored. A wrong value is an error naming its key.
    pub fn parse(text: &str) -> Result<(Settings, Vec<String>), ConfigError> {
        let raw: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid(format!("YAML: {e}")))?;
        match raw {
            serde_yaml::Value::Mapping(_) => {}
            serde_yaml::Value::Null => return Ok((Settings::default(), Vec::new())),
            _ => return Err(ConfigError::Invalid("carrera.yaml must be a map".into())),
        }
        let mut unknown = Vec::new();
        let mut note = |p: serde_ignored::Path| unknown.push(key_path(&p));
        let de = serde_ignored::Deserializer::new(raw, &mut note);
        let s: Settings = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::Invalid(format!("`{}`: {}", e.path(), e.inner())))?;
        if s.port == 0 {
            return Err(ConfigError::Invalid("`port` must be > 0".into()));
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

    fn err(yaml: &str) -> String {
        match Settings::parse(yaml) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_embedded_default() {
        let (s, unknown) = Settings::parse("").unwrap();
        assert_eq!(s.port, 9613);
        assert_eq!(s.admin_port, 9614);
        assert_eq!(s.mode(), Mode::Embedded);
        assert!(unknown.is_empty());
    }

    /// The values every key had before the settings were typed (issue 18), in the key's unit.
    #[test]
    fn defaults_are_unchanged() {
        let (s, _) = Settings::parse("").unwrap();
        let ms = Duration::from_millis;
        assert_eq!(s.server.bind_addr.to_string(), "0.0.0.0");
        assert_eq!(s.server.admin_bind_addr.to_string(), "0.0.0.0");
        assert_eq!(s.server.idle_timeout_sec, Duration::ZERO);
        assert_eq!(s.server.shutdown_drain_ms, ms(10_000));
        assert_eq!(s.server.frame_read_timeout_ms, ms(10_000));
        assert_eq!(s.server.write_timeout_ms, ms(10_000));
        assert_eq!(s.server.admin_token, None);
        assert_eq!(s.forwarding.default_timeout_ms, ms(3000));
        assert_eq!(s.forwarding.max_timeout_ms, ms(60_000));
        assert_eq!(s.forwarding.async_timeout_ms, ms(10_000));
        assert_eq!(s.forwarding.retry_backoff_ms, ms(5));
        assert_eq!(s.forwarding.retry_backoff_max_ms, ms(100));
        assert_eq!(s.forwarding.broker_fault_backoff_ms, ms(3000));
        assert_eq!(s.forwarding.producer_flush_timeout_ms, ms(5000));
        assert_eq!(s.zk.session_timeout_ms, ms(30_000));
        assert_eq!(s.zk.startup_wait_ms, ms(15_000));
        assert_eq!(s.zk.resync_interval_sec, Duration::from_secs(300));
        assert_eq!(s.logging.level.as_str(), "info");
        assert_eq!(s.logging.format, LogFormat::Text);
        assert_eq!(s.logging.retain_hours, Duration::from_secs(168 * 3600));
        let sc = &s.scheduler;
        assert_eq!(sc.max_delay_seconds, Duration::from_secs(5_356_800));
        assert_eq!(sc.loop_catch_up, LoopCatchUp::Skip);
        assert_eq!(sc.loop_catch_up_max, 100);
        assert_eq!(sc.late_tolerance_ms, ms(1000));
        assert_eq!(sc.near_window_ms, ms(60_000));
        assert_eq!((sc.max_loaded, sc.fire_batch_size), (500_000, 256));
        assert_eq!(sc.fire_timeout_ms, ms(10_000));
        assert_eq!(sc.fire_retry_initial_ms, ms(100));
        assert_eq!(sc.fire_retry_max_ms, ms(30_000));
        assert_eq!(sc.fire_retry_budget_sec, Duration::from_secs(3600));
        assert_eq!(sc.done_retention_sec, Duration::from_secs(3600));
        assert_eq!(sc.dead_retention_sec, Duration::from_secs(604_800));
        assert_eq!(sc.store_stuck_after_ms, ms(5000));
        assert_eq!(sc.store_cache_mb, 128);
        assert_eq!(sc.store_engine, scheduler::EngineKind::Redb);
        assert_eq!(sc.cluster.session_timeout_ms, ms(6000));
        assert_eq!(sc.cluster.heartbeat_ms, ms(100));
        // One default per key: the scheduler's configuration comes back unchanged.
        let (c, d) = (sc.to_config(), scheduler::Config::default());
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn durations_are_read_in_the_unit_of_their_key() {
        let (s, _) = Settings::parse(
            "server:\n  idleTimeoutSec: 7\n  shutdownDrainMs: 250\nlogging:\n  retainHours: 2\n\
             scheduler:\n  maxDelaySeconds: 60\n  nearWindowMs: 1500\n  doneRetentionSec: 9\n\
             zk:\n  resyncIntervalSec: 4\n",
        )
        .unwrap();
        assert_eq!(s.server.idle_timeout_sec, Duration::from_secs(7));
        assert_eq!(s.server.shutdown_drain_ms, Duration::from_millis(250));
        assert_eq!(s.logging.retain_hours, Duration::from_secs(7200));
        assert_eq!(s.scheduler.max_delay_seconds, Duration::from_secs(60));
        assert_eq!(s.scheduler.near_window_ms, Duration::from_millis(1500));
        assert_eq!(s.scheduler.to_config().near_window_ms, 1500);
        assert_eq!(s.scheduler.to_config().done_retention_sec, 9);
        assert_eq!(s.zk.resync_interval_sec, Duration::from_secs(4));
        let e = err("forwarding:\n  defaultTimeoutMs: -1\n");
        assert!(e.contains("`forwarding.defaultTimeoutMs`"), "{e}");
        assert!(e.contains("milliseconds"), "{e}");
        let e = err("server:\n  idleTimeoutSec: 10s\n");
        assert!(
            e.contains("`server.idleTimeoutSec`") && e.contains("seconds"),
            "{e}"
        );
    }

    #[test]
    fn choices_refuse_a_wrong_value_with_path_and_allowed_values() {
        for (yaml, path, allowed) in [
            (
                "scheduler:\n  loopCatchUp: skipp\n",
                "scheduler.loopCatchUp",
                ["skip", "all"],
            ),
            (
                "logging:\n  format: jsn\n",
                "logging.format",
                ["text", "json"],
            ),
            (
                "scheduler:\n  storeEngine: rocksdb\n",
                "scheduler.storeEngine",
                ["redb", "sled"],
            ),
            // fjall was removed (issue 17): refused like any unknown engine.
            (
                "scheduler:\n  storeEngine: fjall\n",
                "scheduler.storeEngine",
                ["redb", "sled"],
            ),
            (
                "logging:\n  level: inof\n",
                "logging.level",
                ["info", "debug"],
            ),
            (
                "logging:\n  level: info,pproxy=loud\n",
                "logging.level",
                ["info", "trace"],
            ),
        ] {
            let e = err(yaml);
            assert!(e.contains(&format!("`{path}`")), "{e}");
            for a in allowed {
                assert!(e.contains(a), "{a} missing: {e}");
            }
        }
        let (s, _) = Settings::parse(
            "scheduler:\n  loopCatchUp: All\n  storeEngine: ' Sled '\nlogging:\n  format: json\n  \
             level: warn,pproxy::zk=debug\n",
        )
        .unwrap();
        assert_eq!(s.scheduler.loop_catch_up, LoopCatchUp::All);
        assert!(!s.scheduler.to_config().catch_up.skip);
        assert_eq!(s.scheduler.to_config().engine, scheduler::EngineKind::Sled);
        assert_eq!(s.logging.format, LogFormat::Json);
        assert_eq!(s.logging.level.as_str(), "warn,pproxy::zk=debug");
    }

    #[test]
    fn addresses_are_checked_when_read() {
        let (s, _) =
            Settings::parse("server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: '::'\n").unwrap();
        assert_eq!(s.server.bind_addr, IpAddr::from([127, 0, 0, 1]));
        assert!(s.server.admin_bind_addr.is_ipv6());
        let e = err("server:\n  adminBindAddr: 0.0.0.300\n");
        assert!(e.contains("`server.adminBindAddr`"), "{e}");
        assert!(e.contains("IP address"), "{e}");
        let e = err("port: 70000\n");
        assert!(e.contains("`port`"), "{e}");
    }

    #[test]
    fn blank_means_default() {
        let (s, _) = Settings::parse(
            "host: ''\nlocalConfig: ' '\nserver:\n  adminToken: ''\nscheduler:\n  cluster:\n    \
             journalTopic: ''\n    group: ' g '\n",
        )
        .unwrap();
        assert_eq!(s.host, None);
        assert_eq!(s.local_config, None);
        assert_eq!(s.server.admin_token, None);
        assert_eq!(s.scheduler.cluster.journal_topic, None);
        assert_eq!(s.scheduler.cluster.group.as_deref(), Some("g"));
    }

    #[test]
    fn mode_precedence_and_unknown_keys() {
        let (s, unknown) = Settings::parse(
            "zookeeperAddr: a:2181\nlocalConfig: x.json\nbogus: 1\nforwarding:\n  defaultTimeoutMs: 7\n",
        )
        .unwrap();
        assert_eq!(s.mode(), Mode::Local(PathBuf::from("x.json")));
        assert_eq!(unknown, vec!["bogus".to_string()]);
        assert_eq!(s.forwarding.default_timeout_ms, Duration::from_millis(7));
        let (s, _) = Settings::parse("zookeeperAddr: a:2181\n").unwrap();
        assert_eq!(s.mode(), Mode::ZooKeeper);
        let (s, _) = Settings::parse("zookeeperAddr: a:2181\nembeddedKafka: true\n").unwrap();
        assert_eq!(s.mode(), Mode::Embedded);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let (s, unknown) = Settings::parse(
            "server:\n  bindAdr: 127.0.0.1\nscheduler:\n  cluster:\n    enabeld: true\n\
             acl:\n  principals:\n    - name: a\n      topic: [x]\nkafkaOverrides:\n  '*':\n    \
             linger.ms: '5'\n",
        )
        .unwrap();
        assert_eq!(
            unknown,
            vec![
                "server.bindAdr".to_string(),
                "scheduler.cluster.enabeld".to_string(),
                "acl.principals[0].topic".to_string(),
            ]
        );
        // Free-form maps are not checked.
        assert_eq!(s.kafka_overrides["*"]["linger.ms"], "5");
    }

    #[test]
    fn shipped_files_parse_without_unknown_keys() {
        for (name, text) in [
            ("conf/carrera.yaml", include_str!("../../conf/carrera.yaml")),
            (
                "conf/carrera-local.yaml",
                include_str!("../../conf/carrera-local.yaml"),
            ),
            (
                "conf/carrera-zk.yaml",
                include_str!("../../conf/carrera-zk.yaml"),
            ),
            (
                "deploy/debian/carrera.yaml",
                include_str!("../../deploy/debian/carrera.yaml"),
            ),
        ] {
            let (_, unknown) = Settings::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(unknown.is_empty(), "{name}: {unknown:?}");
        }
    }
}
