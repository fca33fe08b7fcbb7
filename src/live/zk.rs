//! ZooKeeper mode's loops: the first configuration (ZooKeeper, else the cache) and the watch
//! that applies every change as a new generation (config.md §3, §8).

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;

use super::LiveConfig;
use crate::config::settings::Settings;
use crate::config::zk::{connect, parse, read, read_cache, write_cache, Documents};
use crate::config::LOG_TARGET as CONFIG_TARGET;
use crate::forward::snapshot::{from_documents, Build, Snapshot};
use crate::lifecycle::Tasks;
use crate::metrics::{labels, BrokerMetrics, Metrics};

/// The first snapshot: from ZooKeeper within `zk.startupWaitMs`, else from the cache, else keep
/// trying every 5 s (the Thrift port stays closed meanwhile).
pub async fn initial(
    s: &Settings,
    node: &str,
    tasks: &Tasks,
    broker: &BrokerMetrics,
) -> (Snapshot, Option<Documents>) {
    let build = Build {
        settings: s,
        node,
        embedded: None,
        previous: None,
        tasks,
        broker,
    };
    let started = tokio::time::Instant::now();
    let startup_wait = s.zk.startup_wait_ms;
    loop {
        let left = startup_wait
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(500));
        if let Some(client) = connect(s, left).await {
            if let Ok(Ok((Some(docs), _))) =
                tokio::time::timeout(left, read(&client, node, None)).await
            {
                match parse(&docs).and_then(|(p, t)| from_documents(&build, p, &t, "zk")) {
                    Ok(snap) => {
                        let _ = write_cache(s, &docs);
                        return (snap, Some(docs));
                    }
                    Err(e) => {
                        tracing::error!(target: CONFIG_TARGET, error = %e, "ZooKeeper config rejected")
                    }
                }
            }
        }
        if started.elapsed() >= startup_wait {
            if let Some(docs) = read_cache(s) {
                match parse(&docs).and_then(|(p, t)| from_documents(&build, p, &t, "cache")) {
                    Ok(snap) => {
                        tracing::warn!(target: CONFIG_TARGET, "ZooKeeper unavailable: starting from the cache");
                        return (snap, Some(docs));
                    }
                    Err(e) => {
                        tracing::error!(target: CONFIG_TARGET, error = %e, "cached config rejected")
                    }
                }
            }
            tracing::error!(target: CONFIG_TARGET, "no usable configuration yet; retrying in 5 s");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Watches ZooKeeper for the life of the process and applies every change as a new generation.
/// `metrics` gets the session state (`pproxy_zk_connected`) and the reload counts.
pub async fn watch(
    live: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    mut last: Option<Documents>,
    tasks: Tasks,
) {
    let node = live.node().to_string();
    loop {
        let s = live.settings_full();
        let Some(client) = connect(&s, Duration::from_secs(10)).await else {
            metrics.zk_connected.set(0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        metrics.zk_connected.set(1);
        let mut state = client.state_watcher();
        loop {
            let s = live.settings_full();
            let read_result = read(&client, &node, last.as_ref().map(|d| d.proxy.as_str())).await;
            let (docs, watches) = match read_result {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(target: CONFIG_TARGET, error = %e, "ZooKeeper read failed; reconnecting");
                    break;
                }
            };
            if let Some(docs) = docs.filter(|d| Some(d) != last.as_ref()) {
                apply(&live, &metrics, &s, &docs, &tasks).await;
                last = Some(docs);
            }
            let resync = s.zk.resync_interval_sec.max(Duration::from_secs(1));
            let any_watch = async {
                if watches.is_empty() {
                    std::future::pending::<()>().await;
                } else {
                    select_all(watches).await;
                }
            };
            tokio::select! {
                _ = any_watch => {}
                _ = tokio::time::sleep(resync) => {}
                st = state.changed() => {
                    if !matches!(st, zookeeper_client::SessionState::SyncConnected) {
                        tracing::warn!(target: CONFIG_TARGET, state = ?st, "ZooKeeper session changed; reconnecting");
                        break;
                    }
                }
            }
        }
        metrics.zk_connected.set(0);
    }
}

async fn apply(
    live: &LiveConfig,
    metrics: &Metrics,
    s: &Arc<Settings>,
    docs: &Documents,
    tasks: &Tasks,
) {
    let old = live.snapshot_full();
    let result = parse(docs).and_then(|(proxy, mut topics)| {
        // An invalid topic document keeps its previous version.
        for (name, _) in &docs.topics {
            if !topics.iter().any(|t| &t.topic == name) {
                if let Some(prev) = old.zk_topics.iter().find(|t| &t.topic == name) {
                    topics.push(prev.clone());
                }
            }
        }
        let build = Build {
            settings: s,
            node: live.node(),
            embedded: None,
            previous: Some(&old),
            tasks,
            broker: &metrics.broker,
        };
        from_documents(&build, proxy, &topics, "zk")
    });
    match result {
        Ok(snap) => {
            let flush = s.forwarding.producer_flush_timeout_ms;
            let generation = live.install(snap, flush, tasks);
            let labels = labels::Reload {
                source: "zk",
                result: "applied",
            };
            metrics.config_reloads.get_or_create(&labels).inc();
            tracing::info!(target: CONFIG_TARGET, generation, topics = docs.topics.len(), "ZooKeeper configuration applied");
            if let Err(e) = write_cache(s, docs) {
                tracing::warn!(target: CONFIG_TARGET, error = %e, "config cache not written");
            }
        }
        Err(e) => {
            let labels = labels::Reload {
                source: "zk",
                result: "rejected",
            };
            metrics.config_reloads.get_or_create(&labels).inc();
            tracing::error!(target: CONFIG_TARGET, error = %e, "ZooKeeper configuration rejected; previous kept");
        }
    }
}
