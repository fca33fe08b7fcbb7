//! ZooKeeper mode (config.md §3, §4.1, §8): the DDMQ console's documents under
//! `/carrera/v4/config`, watched, cached atomically on disk, re-read periodically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt;

use super::model::{ProxyConfig, TopicConfig};
use super::settings::Settings;
use super::ConfigError;
use super::LOG_TARGET as CONFIG_TARGET;

/// The DDMQ chroot.
pub const CHROOT: &str = "/carrera/v4/config";

/// The connect string with the chroot appended when missing.
pub fn connect_string(addr: &str) -> String {
    if addr.contains(CHROOT) {
        addr.to_string()
    } else {
        format!("{}{CHROOT}", addr.trim_end_matches('/'))
    }
}

/// Raw documents as read (or cached): the proxy config and each whitelisted topic present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Documents {
    /// `/pproxy/<node>` text.
    pub proxy: String,
    /// `/topic/<t>` texts by topic name.
    pub topics: Vec<(String, String)>,
}

/// Parses documents: an invalid proxy config fails the whole set; an invalid topic document is
/// left out (its previous version, if any, is kept by the caller).
pub fn parse(docs: &Documents) -> Result<(ProxyConfig, Vec<TopicConfig>), ConfigError> {
    let proxy = ProxyConfig::parse(&docs.proxy, true)?;
    let mut topics = Vec::new();
    for (name, text) in &docs.topics {
        let parsed = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
            .and_then(|v| {
                let o = v
                    .as_object()
                    .ok_or_else(|| ConfigError::Invalid("not an object".into()))?;
                TopicConfig::parse(o, Some(name))
            });
        match parsed {
            Ok(t) => topics.push(t),
            Err(e) => {
                tracing::error!(target: CONFIG_TARGET, topic = %name, error = %e, "topic config rejected")
            }
        }
    }
    Ok((proxy, topics))
}

fn cache_dir(s: &Settings) -> PathBuf {
    s.data_dir.join("config-cache")
}

fn write_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Writes the documents to `<dataDir>/config-cache` (temp file, fsync, rename each).
pub fn write_cache(s: &Settings, docs: &Documents) -> std::io::Result<()> {
    let dir = cache_dir(s);
    let topic_dir = dir.join("topic");
    if topic_dir.exists() {
        for e in std::fs::read_dir(&topic_dir)?.flatten() {
            let name = e
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string();
            if !docs.topics.iter().any(|(t, _)| *t == name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for (t, text) in &docs.topics {
        write_atomic(&topic_dir.join(format!("{t}.json")), text)?;
    }
    write_atomic(&dir.join("pproxy.json"), &docs.proxy)
}

/// Reads the cached documents, if a cache exists.
pub fn read_cache(s: &Settings) -> Option<Documents> {
    let dir = cache_dir(s);
    let proxy = std::fs::read_to_string(dir.join("pproxy.json")).ok()?;
    let mut topics = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("topic")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let (Some(t), Ok(text)) = (
                name.strip_suffix(".json"),
                std::fs::read_to_string(e.path()),
            ) {
                topics.push((t.to_string(), text));
            }
        }
    }
    topics.sort();
    Some(Documents { proxy, topics })
}

pub type Watch = futures::future::BoxFuture<'static, ()>;

fn is_no_node(e: &zookeeper_client::Error) -> bool {
    matches!(e, zookeeper_client::Error::NoNode)
}

/// Reads the proxy config and every whitelisted topic, registering one watch per path.
/// `Ok(None)`: `/pproxy/<node>` does not exist (a watch waits for its creation).
pub async fn read(
    client: &zookeeper_client::Client,
    node: &str,
    last_proxy: Option<&str>,
) -> Result<(Option<Documents>, Vec<Watch>), zookeeper_client::Error> {
    let mut watches: Vec<Watch> = Vec::new();
    let path = format!("/pproxy/{node}");
    let proxy_text = match client.get_and_watch_data(&path).await {
        Ok((data, _, w)) => {
            watches.push(
                async move {
                    w.changed().await;
                }
                .boxed(),
            );
            String::from_utf8_lossy(&data).into_owned()
        }
        Err(e) if is_no_node(&e) => {
            let (_, w) = client.check_and_watch_stat(&path).await?;
            watches.push(
                async move {
                    w.changed().await;
                }
                .boxed(),
            );
            match last_proxy {
                // Deleted: keep serving with the last configuration (config.md §8).
                Some(t) => {
                    tracing::error!(target: CONFIG_TARGET, path, "proxy config deleted; keeping the last one");
                    t.to_string()
                }
                None => return Ok((None, watches)),
            }
        }
        Err(e) => return Err(e),
    };
    let whitelist = ProxyConfig::parse(&proxy_text, true)
        .map(|p| p.topics.into_iter().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut topics = Vec::new();
    for t in whitelist {
        let tpath = format!("/topic/{t}");
        match client.get_and_watch_data(&tpath).await {
            Ok((data, _, w)) => {
                watches.push(
                    async move {
                        w.changed().await;
                    }
                    .boxed(),
                );
                topics.push((t, String::from_utf8_lossy(&data).into_owned()));
            }
            Err(e) if is_no_node(&e) => {
                let (_, w) = client.check_and_watch_stat(&tpath).await?;
                watches.push(
                    async move {
                        w.changed().await;
                    }
                    .boxed(),
                );
            }
            Err(e) => return Err(e),
        }
    }
    topics.sort();
    Ok((
        Some(Documents {
            proxy: proxy_text,
            topics,
        }),
        watches,
    ))
}

/// Connects (bounded by `wait`).
pub async fn connect(s: &Settings, wait: Duration) -> Option<zookeeper_client::Client> {
    let addr = connect_string(s.zookeeper_addr.as_deref().unwrap_or(""));
    let fut = zookeeper_client::Client::connector()
        .with_session_timeout(s.zk.session_timeout_ms.max(Duration::from_secs(2)))
        .connect(&addr);
    match tokio::time::timeout(wait, fut).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::warn!(target: CONFIG_TARGET, %addr, error = %e, "ZooKeeper connect failed");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_is_appended_once() {
        assert_eq!(
            connect_string("h1:2181,h2:2181"),
            "h1:2181,h2:2181/carrera/v4/config"
        );
        assert_eq!(
            connect_string("h:2181/carrera/v4/config"),
            "h:2181/carrera/v4/config"
        );
    }

    #[test]
    fn cache_round_trip_is_atomic_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Settings::parse("").unwrap();
        s.data_dir = dir.path().to_path_buf();
        let docs = Documents {
            proxy: "{}".into(),
            topics: vec![("a".into(), "{}".into()), ("b".into(), "{}".into())],
        };
        write_cache(&s, &docs).unwrap();
        assert_eq!(read_cache(&s), Some(docs));
        let fewer = Documents {
            proxy: "{\"x\":1}".into(),
            topics: vec![("b".into(), "{}".into())],
        };
        write_cache(&s, &fewer).unwrap();
        assert_eq!(
            read_cache(&s),
            Some(fewer),
            "removed topics leave the cache"
        );
    }
}
