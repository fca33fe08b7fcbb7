//! Shared helpers of the integration tests: a real `pproxy` process, a Thrift client, and Kafka
//! admin/consumer helpers against the broker started by `scripts/stack.sh`.
#![allow(dead_code)]

pub mod cluster;
pub mod disk;
pub mod prometheus;
pub mod rmq;

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pproxy::client::Client;
use pproxy::http::{HeaderMap, Method};
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, DelayMessage, Message, Protocol};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running pproxy process, stopped (SIGTERM) on drop.
pub struct Proxy {
    child: Option<Child>,
    conf: PathBuf,
    /// Thrift address.
    pub addr: String,
    /// Admin port.
    pub admin_port: u16,
    /// Working directory (config, data, log).
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `pproxy run` with a carrera.yaml made of the port keys plus `extra_yaml`.
    pub fn start(extra_yaml: &str) -> Proxy {
        Self::start_with_files(extra_yaml, &[])
    }

    /// Like `start`, also writing `files` (name, content) into the working directory first.
    pub fn start_with_files(extra_yaml: &str, files: &[(&str, String)]) -> Proxy {
        Self::start_on(
            free_port(),
            free_port(),
            extra_yaml,
            files,
            tempfile::tempdir().expect("tempdir"),
        )
    }

    /// Starts on chosen ports in a chosen working directory (ZooKeeper tests need the node name
    /// before the process starts, and a restart from the same data directory).
    pub fn start_on(
        port: u16,
        admin_port: u16,
        extra_yaml: &str,
        files: &[(&str, String)],
        dir: tempfile::TempDir,
    ) -> Proxy {
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        // Tests that set `server:` themselves bind loopback addresses there.
        let server = if extra_yaml.contains("server:") {
            ""
        } else {
            "server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n"
        };
        let yaml = format!(
            "host: 127.0.0.1\nport: {port}\nadminPort: {admin_port}\n{server}dataDir: data\n{extra_yaml}\n"
        );
        let conf = dir.path().join("carrera.yaml");
        std::fs::write(&conf, yaml).expect("write carrera.yaml");
        let mut p = Proxy {
            child: None,
            conf,
            addr: format!("127.0.0.1:{port}"),
            admin_port,
            dir,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pproxy.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_pproxy"))
            .arg("run")
            .arg("-c")
            .arg(&self.conf)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pproxy");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    /// Sends SIGHUP (reload).
    pub fn hup(&self) {
        if let Some(c) = &self.child {
            unsafe_kill(c.id(), 1);
        }
    }

    /// SIGKILLs the process (no drain, no flush).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process and hands back its working directory.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Starts the process again on the same configuration, ports and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn wait_ready(&mut self, bound: Duration) {
        let until = Instant::now() + bound;
        while Instant::now() < until {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("pproxy exited early ({status}):\n{}", self.log());
                }
            }
            if matches!(self.http_get("/ready"), Some((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pproxy not ready in {bound:?}:\n{}", self.log());
    }

    /// The process's resident memory (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        let console =
            std::fs::read_to_string(self.dir.path().join("pproxy.log")).unwrap_or_default();
        let main =
            std::fs::read_to_string(self.dir.path().join("logs/pproxy.log")).unwrap_or_default();
        format!("--- console ---\n{console}\n--- logs/pproxy.log ---\n{main}")
    }

    /// A blocking GET on the admin port: (status, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        admin_get(self.admin_port, path)
    }

    /// A connected compact-protocol client.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr, Protocol::Compact, Duration::from_secs(15))
            .await
            .expect("connect")
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe_kill(c.id(), 15);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    // Plain `kill` keeps the test crate free of unsafe code.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
        // A failing test shows why the proxy answered as it did (CI keeps only the output).
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            eprintln!("--- last {LOG_TAIL_LINES} lines of the pproxy log ---\n{tail}");
        }
    }
}

/// Lines of the pproxy log a failing test prints.
const LOG_TAIL_LINES: usize = 80;

/// Sends one call and expects a Result/DelayResult: (code, msg, delay id).
pub async fn call(c: &mut Client, call: &Call) -> (i32, String, Option<String>) {
    match c.call(call).await.expect("call") {
        Reply::Result {
            code,
            msg,
            delay_id,
            ..
        } => (code, msg, delay_id),
        other => panic!("expected a result, got {other:?}"),
    }
}

/// A message with topic and body.
pub fn msg(topic: &str, body: &[u8]) -> Message {
    Message {
        topic: Some(topic.into()),
        body: Some(Bytes::copy_from_slice(body)),
        ..Default::default()
    }
}

/// The real Kafka broker of the test stack; fails loudly when the stack is not up.
pub fn kafka_bootstrap() -> Option<String> {
    stack_server("PPROXY_TEST_KAFKA", "127.0.0.1:9092", "Kafka", "kafka")
}

/// The ZooKeeper of the test stack (`PPROXY_TEST_ZK`), or `None` after saying the test is skipped.
pub fn zookeeper() -> Option<String> {
    stack_server("PPROXY_TEST_ZK", "127.0.0.1:2181", "ZooKeeper", "zookeeper")
}

/// The address in `var` (else `default`) when something listens there. Otherwise the test is
/// skipped with one line, or fails under `PPROXY_REQUIRE_STACK=1`.
pub fn stack_server(var: &str, default: &str, name: &str, part: &str) -> Option<String> {
    let addr = std::env::var(var).unwrap_or_else(|_| default.into());
    let up = addr
        .parse()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if up {
        return Some(addr);
    }
    skip(&format!(
        "no {name} at {addr}: start it with `scripts/stack.sh up {part}` (scripts/test.sh does)"
    ));
    None
}

/// Says in one line that the running test is skipped and why; with `PPROXY_REQUIRE_STACK=1`
/// (scripts/test.sh) a skip is a failure instead. Written to the process's stderr, not through
/// `eprintln!`, which the test harness captures and hides for tests that pass.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        std::env::var("PPROXY_REQUIRE_STACK").as_deref() != Ok("1"),
        "{test}: {why} (PPROXY_REQUIRE_STACK=1: nothing may be skipped)"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Held for writing by a test that stops a shared server or asserts a time (it then runs alone
/// in its binary), for reading by the tests that use a server, within one test binary.
pub static STACK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A unique topic name.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates a topic on the real Kafka and waits until its metadata shows every partition.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let res = admin
        .create_topics([&nt], &AdminOptions::new())
        .await
        .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            let t = &md.topics()[0];
            if t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {topic} not ready");
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Key (None = null key).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record timestamp (CreateTime: when the producer was handed the record), epoch ms.
    pub timestamp_ms: i64,
}

/// Reads every partition of `topic` from the beginning until `expected` records arrived or
/// `wait` passed; then keeps reading for `settle` to catch unexpected extra records.
pub fn consume(bootstrap: &str, topic: &str, expected: usize, wait: Duration) -> Vec<Consumed> {
    let consumer = consumer_from_beginning(bootstrap, topic);
    let mut out = Vec::new();
    let until = Instant::now() + wait;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > until || settle_until.is_some_and(|s| now > s) {
            break;
        }
        if out.len() >= expected && settle_until.is_none() {
            settle_until = Some(now + Duration::from_millis(500));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Consumed::from_message(&m)),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}

/// A local-mode proxy config document: `broker_clusters`, the members of
/// `carreraConfiguration` (`carrera`, ending with a comma), and static topics bound to `cluster`:
/// (name, extra JSON members such as `,"delayTopic":true`). Static topics with empty `proxies`
/// bind to any node (config.md §4.2).
pub fn local_doc(
    cluster: &str,
    broker_clusters: &str,
    carrera: &str,
    topics: &[(&str, &str)],
) -> String {
    let names: Vec<String> = topics.iter().map(|(t, _)| format!("\"{t}\"")).collect();
    let defs: Vec<String> = topics
        .iter()
        .map(|(t, flags)| {
            format!(
                r#"{{"topic":"{t}"{flags},"topicUnits":[{{"brokerCluster":"{cluster}","proxies":{{}},"maxTps":100000}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"instance":"local","proxyCluster":"P_test","brokerClusters":[{broker_clusters}],
            "topics":[{}],
            "carreraConfiguration":{{{carrera}
              "defaultTopicInfoConf":{{"topics":[{}]}}}}}}"#,
        names.join(","),
        defs.join(",")
    )
}

/// A local-mode proxy config document with one Kafka cluster `K_test` and the given static
/// topics (see `local_doc`).
pub fn local_config(bootstrap: &str, topics: &[(&str, &str)], extra_carrera: &str) -> String {
    let carrera = format!(
        r#""useKafka":true,"kafkaProducers":2,{extra_carrera}
              "kafkaConfigurationMap":{{"K_test":{{"bootstrapServers":["{bootstrap}"],"acks":"all"}}}},"#
    );
    local_doc("K_test", r#""K_test","R_test""#, &carrera, topics)
}

/// Path of a file in the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The code of one `sendSync` of a one-byte body to `topic` on a fresh connection.
pub async fn send_code(p: &Proxy, topic: &str) -> i32 {
    let mut c = p.client().await;
    call(&mut c, &Call::SendSync(Some(msg(topic, b"x")), 3000))
        .await
        .0
}

/// Polls `send_code` until it answers `want` or `bound` passes (configuration changes apply
/// asynchronously); true when it did.
pub async fn eventually_code(p: &Proxy, topic: &str, want: i32, bound: Duration) -> bool {
    let until = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < until {
        if send_code(p, topic).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The value of the first header called `name`.
pub fn header<'a>(c: &'a Consumed, name: &str) -> Option<&'a [u8]> {
    c.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// A delay add used by the crash and disk-trouble tests: body = uuid; a loop is fixed, 2
/// occurrences 3 s apart, expiring a minute after its first due time.
pub fn looped_or_once_add(topic: &str, uuid: &str, due_ms: i64, looped: bool) -> DelayMessage {
    DelayMessage {
        topic: Some(topic.into()),
        body: Some(Bytes::from(uuid.to_string().into_bytes())),
        action: 1,
        timestamp: due_ms,
        dmsgtype: if looped { 3 } else { 2 },
        interval: if looped { 3 } else { 0 },
        times: if looped { 2 } else { 0 },
        expire: if looped { due_ms + 60_000 } else { 0 },
        uuid: Some(uuid.to_string()),
        ..Default::default()
    }
}

/// A delay cancel of `id` on `topic`.
pub fn delay_cancel(topic: &str, id: &str) -> Call {
    Call::SendDelaySync(
        Some(DelayMessage {
            topic: Some(topic.into()),
            uniq_delay_msg_id: Some(id.into()),
            body: Some(Bytes::from_static(b"c")),
            action: 2,
            ..Default::default()
        }),
        3000,
    )
}

/// What the broker shows of acked adds: occurrences required to fire, those catch-up may have
/// skipped, and the required ones missing.
pub struct OccurrenceCheck {
    /// Occurrences that must have fired.
    pub must_fire: usize,
    /// Loop occurrences catch-up may skip (the previous one fired after their due time).
    pub may_skip: usize,
    /// Of those, the ones that did not fire.
    pub skipped: usize,
    /// Required occurrences that never fired.
    pub missing: Vec<String>,
}

/// Checks acked adds (add id -> (occurrence id, due ms)) against fire times by occurrence id.
/// Adds a cancel was sent for are left out. Occurrence 0 must fire; occurrence k of a loop too
/// when occurrence k-1 last fired no later than k's due time, else catch-up may skip it
/// (delay.md 5.3: overdue by more than lateToleranceMs when computed at k-1's completion).
pub fn check_occurrences(
    adds: &HashMap<String, Vec<(String, i64)>>,
    cancel_tried: &HashSet<String>,
    seen: &HashMap<String, Vec<i64>>,
) -> OccurrenceCheck {
    let mut c = OccurrenceCheck {
        must_fire: 0,
        may_skip: 0,
        skipped: 0,
        missing: Vec::new(),
    };
    for (add, occ) in adds {
        if cancel_tried.contains(add) {
            continue;
        }
        for (k, (o, due)) in occ.iter().enumerate() {
            let required = k == 0
                || seen
                    .get(&occ[k - 1].0)
                    .and_then(|t| t.iter().max())
                    .is_some_and(|last| last <= due);
            match (required, seen.contains_key(o)) {
                (true, true) => c.must_fire += 1,
                (true, false) => {
                    c.must_fire += 1;
                    c.missing.push(o.clone());
                }
                (false, fired) => {
                    c.may_skip += 1;
                    c.skipped += usize::from(!fired);
                }
            }
        }
    }
    c
}

impl Consumed {
    /// A consumed record, headers copied.
    pub fn from_message(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(-1),
        }
    }
}

/// A blocking GET on a local admin port (also of a process that may be gone): (status, body).
pub fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    admin_get_full(port, path).map(|(status, _, body)| (status, body))
}

/// A blocking GET on the admin port: (status, response headers, body).
pub fn admin_get_full(port: u16, path: &str) -> Option<(u16, HeaderMap, String)> {
    use pproxy::http::client;
    let addr = format!("127.0.0.1:{port}");
    let get = client::request(Method::GET, &addr, path, &[], None, Duration::from_secs(5));
    let answer = client::blocking(get).ok()?;
    let body = answer.text();
    Some((answer.status.as_u16(), answer.headers, body))
}

/// The occurrence ids and due times of an add the proxy answered with `id`, due at `due` ms:
/// occurrence 0, and for a loop occurrence 1 `gap_ms` later.
pub fn occurrence_ids(id: &str, due: i64, looped: bool, gap_ms: i64) -> Vec<(String, i64)> {
    let parsed = scheduler::DelayId::parse(id).expect("returned id parses");
    (0..if looped { 2 } else { 1 })
        .map(|k| {
            let mut o = parsed.clone();
            o.timestamp = due + gap_ms * k;
            o.timed = k;
            (o.to_string(), due + gap_ms * k)
        })
        .collect()
}

/// A consumer (fresh group, no commits) assigned to every partition of `topic` from the
/// beginning.
pub fn consumer_from_beginning(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_topic("pproxy-test"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Whether the program `bin` (what provides it: `what`) is on the PATH. Without it the test is
/// skipped with one line saying why, unless `PPROXY_REQUIRE_STACK=1` (scripts/test.sh sets it),
/// which makes a missing tool a failure.
pub fn tool_available(bin: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(bin).is_file()));
    if !found {
        skip(&format!("{bin} not found: install {what}"));
    }
    found
}

/// One framed compact call of a method the proxy does not have (a protocol error).
pub fn unknown_method_frame() -> Vec<u8> {
    let name = b"noSuchMethod";
    let mut payload = vec![0x82, 0x21, 0x01, name.len() as u8];
    payload.extend_from_slice(name);
    payload.push(0x00);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}
