//! RocketMQ helpers for the integration tests: the real name server and broker of
//! `scripts/stack.sh`, topics created with its `rocketmq-topic`, and a pull consumer
//! (rocketmq-client-rust) that reads every queue from offset 0.

#![allow(dead_code)]
// Classic pull reads chosen queues from offset 0, which is what these checks need.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig, DefaultMQPullConsumer};
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_observability::TelemetryHandle;
use rocketmq_runtime::service_context::ScopeId;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use super::repo_path;

/// The name server of the test stack, or `None` after saying the test is skipped.
pub fn namesrv() -> Option<String> {
    super::stack_server(
        "PPROXY_TEST_ROCKETMQ_NAMESRV",
        "127.0.0.1:9876",
        "RocketMQ name server",
        "rocketmq",
    )
}

/// The stack's broker as the name server knows it: (cluster, broker name, address), as
/// scripts/stack.sh configures it.
pub const BROKER: (&str, &str, &str) = ("DefaultCluster", "broker-a", "127.0.0.1:10911");

/// Creates `topic` with `queues` read/write queues and waits for its route.
pub fn create_topic(topic: &str, queues: u32) {
    let out = std::process::Command::new(repo_path("scripts/stack.sh"))
        .args(["rocketmq-topic", topic, &queues.to_string()])
        .output()
        .expect("run scripts/stack.sh rocketmq-topic");
    assert!(
        out.status.success(),
        "rocketmq-topic {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static OWNER: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    RuntimeOwner::plan(RuntimeConfig {
        thread_name: "rmq-test".into(),
        ..Default::default()
    })
    .expect("runtime plan")
    .build()
    .expect("runtime")
});

/// A client runtime for a test consumer or producer.
pub fn client_runtime(scope: &str) -> Arc<ClientRuntime> {
    ClientRuntime::try_new(
        OWNER
            .root_context()
            .component(ScopeId::try_new(scope).expect("scope name")),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("client runtime")
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Got {
    /// Queue id it was stored in.
    pub queue_id: i32,
    /// Broker it was stored on.
    pub broker: String,
    /// Body (decompressed by the consumer when the compressed flag is set).
    pub body: Vec<u8>,
    /// All properties (KEYS, TAGS, UNIQ_KEY, user properties ...).
    pub props: HashMap<String, String>,
    /// The stored sysFlag.
    pub sys_flag: i32,
    /// Offset in its queue.
    pub offset: i64,
}

impl Got {
    /// A property.
    pub fn prop(&self, k: &str) -> Option<&str> {
        self.props.get(k).map(String::as_str)
    }
}

/// Reads every queue of `topic` from offset 0 to its end, waiting until at least `expected`
/// messages arrived or `wait` passed.
///
/// To the end even once `expected` are in: a topic may hold more than the acknowledged
/// messages (answers 12 that were stored, duplicates of retries), and a reader that stopped at
/// `expected` left the newest messages of a queue unread, the acknowledged ones among them
/// (issue 20 part 5).
pub async fn consume(ns: &str, topic: &str, expected: usize, wait: Duration) -> Vec<Got> {
    let consumer = DefaultMQPullConsumer::builder(client_runtime("test-consumer"))
        .consumer_group(format!("cg_{}", uuid::Uuid::new_v4().simple()))
        .name_server_addr(ns.to_string())
        .consumer_pull_timeout(Duration::from_secs(5))
        .build()
        .expect("pull consumer");
    consumer.start().await.expect("consumer start");
    let queues: Vec<MessageQueue> = consumer
        .fetch_subscribe_message_queues(topic)
        .await
        .expect("queues")
        .into_iter()
        .collect();
    let mut next: HashMap<MessageQueue, i64> = queues.iter().map(|q| (q.clone(), 0)).collect();
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    let mut at_end = false;
    while (got.len() < expected || !at_end) && tokio::time::Instant::now() < until {
        at_end = true;
        let mut found = false;
        for q in &queues {
            let from = next[q];
            let Ok(r) = consumer.pull(q, "*", from, 32).await else {
                at_end = false;
                continue;
            };
            if let Some(list) = r.msg_found_list().filter(|l| !l.is_empty()) {
                at_end = false;
                found = true;
                for m in list {
                    let props = m
                        .get_properties()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    got.push(Got {
                        queue_id: q.queue_id(),
                        broker: q.broker_name().to_string(),
                        body: m.get_body().map(|b| b.to_vec()).unwrap_or_default(),
                        props,
                        sys_flag: m.sys_flag(),
                        offset: m.queue_offset(),
                    });
                }
            }
            next.insert(q.clone(), r.next_begin_offset() as i64);
        }
        // A pass that found nothing waits for messages still to come (or a failed pull); no
        // pause while there is more to read.
        if !found {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = consumer.shutdown().await;
    got.sort_by_key(|g| (g.broker.clone(), g.queue_id, g.offset));
    got
}

/// A local-mode proxy config with one RocketMQ cluster `R_test` on `ns` and the given topics
/// (see `local_doc`), plus extra carreraConfiguration members.
pub fn local_config(ns: &str, topics: &[(&str, &str)], extra_carrera: &str) -> String {
    let carrera = format!(
        r#""useRocketmq":true,"rocketmqProducers":1,{extra_carrera}
              "rocketmqConfigurationMap":{{"R_test":{{"namesrvAddrs":["{ns}"],"compressMsgBodyOverHowmuch":4096}}}},"#
    );
    super::local_doc("R_test", r#""R_test""#, &carrera, topics)
}

/// The subscribe queues of `topic`, or the lookup error (a topic without a route).
pub async fn consume_checked(ns: &str, topic: &str) -> Result<usize, String> {
    let consumer = DefaultMQPullConsumer::builder(client_runtime("test-route-check"))
        .consumer_group(format!("cg_{}", uuid::Uuid::new_v4().simple()))
        .name_server_addr(ns.to_string())
        .build()
        .map_err(|e| e.to_string())?;
    consumer.start().await.map_err(|e| e.to_string())?;
    let r = consumer
        .fetch_subscribe_message_queues(topic)
        .await
        .map(|q| q.len())
        .map_err(|e| e.to_string());
    let _ = consumer.shutdown().await;
    match r {
        Ok(0) => Err("no queues".into()),
        other => other,
    }
}
