//! `pproxy check-config`: parse carrera.yaml and the proxy config (the local file, or one read
//! of ZooKeeper), print what they admit. Exit 0 valid, 2 invalid, 3 ZooKeeper unreachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pproxy::config::model::{parse_topic_info, ProxyConfig, TopicConfig};
use pproxy::config::settings::{Mode, Settings};
use pproxy::forward::admit::TopicTable;

use super::{config_path, load_settings, usage};

/// How long one ZooKeeper read may take.
const ZK_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn check_config(config: Option<PathBuf>) -> ExitCode {
    let path = config_path(config);
    let settings = match load_settings(path.as_ref()) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    println!(
        "mode: {:?}, node: {}",
        settings.mode(),
        settings.node_name()
    );
    if let Err(e) = pproxy::security::Security::prepare(&settings) {
        return usage(e);
    }
    let (proxy, zk_topics) = match settings.mode() {
        Mode::Embedded => {
            println!("embedded: every valid topic is admitted on first use");
            println!("configuration valid");
            return ExitCode::SUCCESS;
        }
        Mode::Local(p) => {
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => return usage(format!("{}: {e}", p.display())),
            };
            match ProxyConfig::parse(&text, false) {
                Ok(proxy) => (proxy, Vec::new()),
                Err(e) => return usage(e),
            }
        }
        Mode::ZooKeeper => match read_zookeeper(&settings) {
            Ok(Ok(docs)) => docs,
            Ok(Err(invalid)) => return usage(invalid),
            Err(unreachable) => {
                eprintln!("{unreachable}");
                return ExitCode::from(3);
            }
        },
    };
    if let Err(e) = print_admission(&settings, &proxy, &zk_topics) {
        return usage(e);
    }
    println!("configuration valid");
    ExitCode::SUCCESS
}

/// One read of this node's documents: `Err` when ZooKeeper cannot be read, `Ok(Err)` when what
/// it holds is invalid.
fn read_zookeeper(
    settings: &Settings,
) -> Result<Result<(ProxyConfig, Vec<TopicConfig>), String>, String> {
    let addr = settings.zookeeper_addr.as_deref().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let client = pproxy::config::zk::connect(settings, ZK_WAIT)
            .await
            .ok_or_else(|| format!("ZooKeeper {addr} unreachable"))?;
        let node = settings.node_name();
        let read = pproxy::config::zk::read(&client, &node, None);
        let docs = match tokio::time::timeout(ZK_WAIT, read).await {
            Ok(Ok((Some(docs), _))) => docs,
            Ok(Ok((None, _))) => {
                return Ok(Err(format!(
                    "ZooKeeper {addr} has no proxy config for node {node} (/pproxy/{node})"
                )))
            }
            Ok(Err(e)) => return Err(format!("ZooKeeper {addr}: {e}")),
            Err(_) => return Err(format!("ZooKeeper {addr}: no answer in {ZK_WAIT:?}")),
        };
        println!(
            "ZooKeeper {addr}: proxy config and {} topic documents read",
            docs.topics.len()
        );
        Ok(pproxy::config::zk::parse(&docs).map_err(|e| e.to_string()))
    })
}

/// Prints the clusters and the topics this node admits.
fn print_admission(
    settings: &Settings,
    proxy: &ProxyConfig,
    zk_topics: &[TopicConfig],
) -> Result<(), String> {
    let cs = &settings.scheduler.cluster;
    if cs.enabled {
        let p = pproxy::delay::cluster::plan(cs, proxy).map_err(|e| e.to_string())?;
        println!(
            "delay cluster mode: journal {} on {} ({}), group {}",
            p.topic, cs.journal_cluster, p.bootstrap, p.group
        );
    }
    let statics = settings
        .default_topic_info_conf
        .as_ref()
        .map(parse_topic_info)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let table = TopicTable::build(proxy, &statics, zk_topics, &settings.node_name());
    for (name, k) in &proxy.carrera.kafka {
        println!("cluster {name}: kafka {}", k.bootstrap_servers.join(","));
    }
    for (name, r) in &proxy.carrera.rocketmq {
        println!("cluster {name}: rocketmq {}", r.namesrv_addrs.join(";"));
    }
    for t in table.all() {
        println!(
            "topic {} -> {}{}",
            t.name,
            t.clusters.join(","),
            if t.delay_topic { " (delay)" } else { "" }
        );
    }
    Ok(())
}
