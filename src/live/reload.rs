//! Hot reload: SIGHUP re-reads carrera.yaml (keys marked R) and the proxy config; a local config
//! file is also re-read when its mtime changes (config.md §1, §9).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::LiveConfig;
use crate::config::settings::{Mode, Settings};
use crate::config::{ConfigError, LOG_TARGET as CONFIG_TARGET};
use crate::forward::snapshot::{load_initial, Build};
use crate::lifecycle::Tasks;
use crate::metrics::{labels, Metrics};
use crate::security::Security;

/// Keeps the running values of the keys that need a restart (marked S in config.md §2.2).
pub fn merge_reloadable(old: &Settings, mut new: Settings) -> Settings {
    new.zookeeper_addr = old.zookeeper_addr.clone();
    new.host = old.host.clone();
    new.port = old.port;
    new.local_config = old.local_config.clone();
    new.embedded_kafka = old.embedded_kafka;
    new.embedded_kafka_brokers = old.embedded_kafka_brokers;
    new.embedded_kafka_partitions = old.embedded_kafka_partitions;
    new.data_dir = old.data_dir.clone();
    new.admin_port = old.admin_port;
    new.server.bind_addr = old.server.bind_addr;
    new.server.admin_bind_addr = old.server.admin_bind_addr;
    new.server.listen_backlog = old.server.listen_backlog;
    new.logging.dir = old.logging.dir.clone();
    new.logging.format = old.logging.format;
    new.scheduler.cluster = old.scheduler.cluster.clone();
    new
}

/// What a reload reads and replaces: the configuration in force, the TLS and ACL state, the
/// reload counters; flushes of replaced producers run as tasks of `tasks`.
#[derive(Clone)]
pub struct Reloader {
    /// The configuration in force.
    pub live: Arc<LiveConfig>,
    /// TLS and ACLs, replaced with the settings.
    pub security: Arc<Security>,
    /// `pproxy_config_reloads_total`.
    pub metrics: Arc<Metrics>,
    /// The process's tasks.
    pub tasks: Tasks,
}

impl Reloader {
    /// Re-reads carrera.yaml (when the proxy was started from one) and the proxy config, and
    /// swaps in a new configuration generation. On error the running configuration stays.
    pub async fn reload(
        &self,
        config_path: Option<&Path>,
        source: &'static str,
    ) -> Result<u64, ConfigError> {
        let result = self.apply(config_path).await;
        let label = if result.is_ok() {
            "applied"
        } else {
            "rejected"
        };
        let labels = labels::Reload {
            source,
            result: label,
        };
        self.metrics.config_reloads.get_or_create(&labels).inc();
        match &result {
            Ok(g) => {
                tracing::info!(target: CONFIG_TARGET, generation = g, source, "configuration applied")
            }
            Err(e) => {
                tracing::error!(target: CONFIG_TARGET, error = %e, source, "configuration rejected")
            }
        }
        result
    }

    async fn apply(&self, config_path: Option<&Path>) -> Result<u64, ConfigError> {
        let live = &self.live;
        let old_settings = live.settings_full();
        let settings = match config_path {
            Some(p) => {
                // A wrong value fails here, naming its key: the running settings stay.
                let (new, unknown) = Settings::load(p)?;
                for key in unknown {
                    tracing::warn!(target: CONFIG_TARGET, key = %key, file = %p.display(), "unknown key ignored");
                }
                Arc::new(merge_reloadable(&old_settings, new))
            }
            None => old_settings.clone(),
        };
        let security = Security::prepare(&settings)?;
        let (s2, l2, tasks) = (settings.clone(), live.clone(), self.tasks.clone());
        let broker = self.metrics.broker.clone();
        // Reads the local file and creates producers: keep it off the runtime threads.
        let snap = tokio::task::spawn_blocking(move || {
            let prev = l2.snapshot_full();
            load_initial(&Build {
                settings: &s2,
                node: l2.node(),
                embedded: l2.embedded(),
                previous: Some(&prev),
                tasks: &tasks,
                broker: &broker,
            })
        })
        .await
        .map_err(|e| ConfigError::Invalid(e.to_string()))??;
        if settings.logging.level != old_settings.logging.level
            && std::env::var_os("RUST_LOG").is_none()
        {
            if let Err(e) = crate::logging::set_filter(settings.logging.level.as_str()) {
                tracing::warn!(target: CONFIG_TARGET, error = %e, "logging.level not applied");
            }
        }
        live.store_settings(settings.clone());
        self.security.install(security);
        let flush = settings.forwarding.producer_flush_timeout_ms;
        Ok(live.install(snap, flush, &self.tasks))
    }

    /// Reloads on SIGHUP, and in local mode whenever the local file's mtime changes (checked
    /// every 2 s).
    pub async fn watch(self, config_path: Option<PathBuf>) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP handler not installed");
            return;
        };
        let local = match self.live.settings().mode() {
            Mode::Local(p) => Some(p),
            _ => None,
        };
        let mut seen = local.as_deref().and_then(mtime);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = self.reload(config_path.as_deref(), "sighup").await;
                    seen = local.as_deref().and_then(mtime);
                }
                _ = tick.tick() => {
                    let Some(p) = local.as_deref() else { continue };
                    let now = mtime(p);
                    if now != seen {
                        seen = now;
                        let _ = self.reload(None, "local").await;
                    }
                }
            }
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keys_keep_running_values() {
        let (old, _) =
            Settings::parse("port: 1000\nadminPort: 1001\nlogging:\n  level: info\n").unwrap();
        let (new, _) = Settings::parse(
            "port: 2000\nadminPort: 2001\nlogging:\n  level: debug\nforwarding:\n  defaultTimeoutMs: 5\n",
        )
        .unwrap();
        let m = merge_reloadable(&old, new);
        assert_eq!((m.port, m.admin_port), (1000, 1001));
        assert_eq!(m.logging.level.as_str(), "debug");
        assert_eq!(m.forwarding.default_timeout_ms, Duration::from_millis(5));
    }
}
