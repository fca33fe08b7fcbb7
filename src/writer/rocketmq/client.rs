//! The rocketmq-client-rust side: one process-wide client runtime and producer construction.

use std::sync::{Arc, LazyLock};

use rocketmq_client_rust::{ClientConfig, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer};
use rocketmq_observability::TelemetryHandle;
use rocketmq_runtime::service_context::ScopeId;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use crate::config::model::RocketmqConfiguration;

/// zlib level of compressed bodies (forwarding.md §7.2).
const COMPRESS_LEVEL: i32 = 5;

/// The client library runs its background work (heartbeats, route polls) on a runtime it owns.
/// It lives for the whole process: dropping a tokio runtime inside another one panics.
static OWNER: LazyLock<Result<RuntimeOwner, String>> = LazyLock::new(|| {
    let plan = RuntimeOwner::plan(RuntimeConfig {
        thread_name: "rocketmq-client".into(),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    plan.build().map_err(|e| e.to_string())
});

/// A client runtime scoped to one producer.
fn client_runtime(scope: &str) -> Result<Arc<ClientRuntime>, String> {
    let owner = OWNER.as_ref().map_err(Clone::clone)?;
    let scope = ScopeId::try_new(scope).map_err(|e| e.to_string())?;
    ClientRuntime::try_new(
        owner.root_context().component(scope),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .map_err(|e| e.to_string())
}

/// Builds and starts producer instance `i` of a cluster; `generation` counts its replacements
/// (instances.rs), each a separate client instance with its own connections.
pub async fn start_producer(
    cluster: &str,
    conf: &RocketmqConfiguration,
    start_millis: i64,
    i: usize,
    generation: u32,
) -> Result<DefaultMQProducer, String> {
    let rt = client_runtime(&format!("pproxy-{cluster}-{i}-g{generation}"))?;
    let mut cc = ClientConfig::new();
    // A distinct instance name gives each producer its own connections to every broker.
    cc.set_instance_name(format!("pproxy-{cluster}-{start_millis}-{i}-g{generation}").into());
    cc.set_poll_name_server_interval(
        conf.poll_name_server_interval.clamp(1, u32::MAX as i64) as u32
    );
    cc.set_heartbeat_broker_interval(
        conf.heartbeat_broker_interval.clamp(1, u32::MAX as i64) as u32
    );
    cc.set_vip_channel_enabled(false);
    let mut p = DefaultMQProducer::builder(rt)
        .client_config(cc)
        .producer_group(format!("{}_{start_millis}{i}", conf.group_prefix))
        .name_server_addr(conf.namesrv_addrs.join(";"))
        .compress_msg_body_over_howmuch(
            conf.compress_msg_body_over_howmuch
                .clamp(1, u32::MAX as i64) as u32,
        )
        .compress_level(COMPRESS_LEVEL)
        // pproxy's own retry policy applies (forwarding.md §4.2); the library never retries.
        .retry_times_when_send_failed(0)
        .retry_another_broker_when_not_store_ok(false)
        // Sizes are checked before the writer (forwarding.md §2); the broker has the last word.
        .max_message_size(u32::MAX / 2)
        .build();
    p.start().await.map_err(|e| e.to_string())?;
    Ok(p)
}
