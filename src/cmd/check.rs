//! `pproxy check-config`: parse carrera.yaml and the proxy config, print what they admit.

use std::path::PathBuf;
use std::process::ExitCode;

use pproxy::config::settings::Mode;

use super::{config_path, load_settings, usage};

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
    match settings.mode() {
        Mode::Local(p) => {
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => return usage(format!("{}: {e}", p.display())),
            };
            let proxy = match pproxy::config::model::ProxyConfig::parse(&text, false) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            let cs = &settings.scheduler.cluster;
            if cs.enabled {
                match pproxy::delay::cluster::plan(cs, &proxy) {
                    Ok(p) => println!(
                        "delay cluster mode: journal {} on {} ({}), group {}",
                        p.topic, cs.journal_cluster, p.bootstrap, p.group
                    ),
                    Err(e) => return usage(e),
                }
            }
            let statics = settings
                .default_topic_info_conf
                .as_ref()
                .map(pproxy::config::model::parse_topic_info)
                .transpose();
            let statics = match statics {
                Ok(s) => s.unwrap_or_default(),
                Err(e) => return usage(e),
            };
            let table = pproxy::forward::admit::TopicTable::build(
                &proxy,
                &statics,
                &[],
                &settings.node_name(),
            );
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
        }
        Mode::Embedded => println!("embedded: every valid topic is admitted on first use"),
        Mode::ZooKeeper => println!(
            "ZooKeeper mode: topics and clusters come from {} (/carrera/v4/config), not contacted by check-config",
            settings.zookeeper_addr.as_deref().unwrap_or_default()
        ),
    }
    println!("configuration valid");
    ExitCode::SUCCESS
}
