//! Start-up and graceful shutdown of the server (operations.md §3).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use std::sync::Arc;

use crate::app::App;
use crate::config::settings::{Mode, Settings};
use crate::config::snapshot::load_initial;
use crate::config::ConfigError;
use crate::delay::sink::WriterSink;
use crate::writer::embedded::EmbeddedHandle;

/// Fatal start-up failures, with the process exit code each maps to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Invalid configuration (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A port could not be bound (exit 3).
    #[error("cannot bind {0}: {1}")]
    Bind(String, std::io::Error),
    /// The delay store cannot be opened, e.g. locked by another process (exit 3).
    #[error("delay store {0}: {1}")]
    Store(String, String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Fatal(String),
}

impl RunError {
    /// Process exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Bind(..) | RunError::Store(..) => 3,
            RunError::Fatal(_) => 1,
        }
    }
}

fn addr(host: &str, port: u16) -> Result<SocketAddr, RunError> {
    format!("{host}:{port}")
        .parse()
        .map_err(|e| RunError::Config(ConfigError::Invalid(format!("address {host}:{port}: {e}"))))
}

/// Runs the proxy until SIGTERM/SIGINT, then drains and returns.
pub async fn run(
    settings: Settings,
    config_path: Option<PathBuf>,
    pid_file: Option<PathBuf>,
) -> Result<(), RunError> {
    let node = settings.node_name();
    // Certificates and ACLs are checked before anything starts: a bad file is exit 2.
    let security = crate::security::Security::new(crate::security::Security::prepare(&settings)?);
    let embedded = if settings.embedded_kafka || settings.mode() == Mode::Embedded {
        let e = EmbeddedHandle::start(
            settings.embedded_kafka_brokers,
            settings.embedded_kafka_partitions,
        )
        .map_err(|e| RunError::Fatal(format!("embedded Kafka: {e}")))?;
        tracing::warn!(
            bootstrap = e.bootstrap(),
            "embedded Kafka cluster started: data is in memory, not for production"
        );
        Some(e)
    } else {
        None
    };
    let (snapshot, zk_docs) = if settings.mode() == Mode::ZooKeeper {
        let (snap, docs) = crate::config::zk::initial(&settings, &node).await;
        (snap, Some(docs))
    } else {
        (
            load_initial(&settings, &node, embedded.as_ref(), None)?,
            None,
        )
    };
    tracing::info!(
        node = %node,
        mode = ?settings.mode(),
        source = snapshot.source,
        clusters = snapshot.writers.clusters.len(),
        "configuration loaded"
    );
    let thrift_addr = addr(&settings.server.bind_addr, settings.port)?;
    let admin_port = settings.admin_port;
    let admin_addr = addr(&settings.server.admin_bind_addr, admin_port)?;
    let backlog = settings.server.listen_backlog;
    let drain = Duration::from_millis(settings.server.shutdown_drain_ms);
    let flush = Duration::from_millis(settings.forwarding.producer_flush_timeout_ms);
    let delay_dir = settings.data_dir.join("delay");
    let sched_cfg = settings.scheduler.to_config();
    let fire_timeout = Duration::from_millis(settings.scheduler.fire_timeout_ms);
    snapshot
        .warm_up(Duration::from_millis(
            settings.forwarding.warm_up_timeout_ms,
        ))
        .await;
    let cluster = if settings.scheduler.cluster.enabled {
        let c = crate::delay::cluster::Cluster::connect(&settings, &snapshot, &node)
            .await
            .map_err(|e| RunError::Fatal(e.to_string()))?;
        tracing::info!(topic = %c.topic, partitions = c.partitions, group = %c.group, node = %c.node, "delay cluster mode");
        Some(c)
    } else {
        None
    };
    let app = App::new(settings, node, snapshot, embedded, security);
    if let Some(c) = &cluster {
        // Partition stores live under dataDir/delay-cluster; the single-node store stays closed.
        let _ = app.cluster.set(c.clone());
    } else {
        let sink = Arc::new(WriterSink {
            app: Arc::downgrade(&app),
            timeout: fire_timeout,
        });
        let sched = scheduler::Scheduler::open(&delay_dir, sched_cfg, sink)
            .await
            .map_err(|e| RunError::Store(delay_dir.display().to_string(), e.to_string()))?;
        let _ = app.scheduler.set(sched);
    }

    if admin_port != 0 {
        let l = crate::admin::bind(admin_addr)
            .await
            .map_err(|e| RunError::Bind(admin_addr.to_string(), e))?;
        tokio::spawn(crate::admin::run(app.clone(), l));
    }
    let listener = crate::server::listener::bind(thrift_addr, backlog)
        .map_err(|e| RunError::Bind(thrift_addr.to_string(), e))?;
    if let Some(p) = &pid_file {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| RunError::Fatal(format!("pid file {}: {e}", p.display())))?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (close_tx, close_rx) = watch::channel(false);
    let server = tokio::spawn(crate::server::listener::run(
        app.clone(),
        listener,
        stop_rx,
        close_rx,
    ));
    app.listening.store(true, Ordering::Release);
    if let Some(c) = &cluster {
        // Joined only once this node can serve forwarded status queries and fire.
        c.start(&app).map_err(|e| RunError::Fatal(e.to_string()))?;
    }
    tokio::spawn(crate::config::reload::watch(app.clone(), config_path));
    if let Some(docs) = zk_docs {
        tokio::spawn(crate::config::zk::watch(app.clone(), docs));
    }
    tracing::info!(%thrift_addr, admin_port, "serving");
    crate::notify::ready();

    let mut term = signal(SignalKind::terminate()).map_err(|e| RunError::Fatal(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| RunError::Fatal(e.to_string()))?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutdown: draining");
    crate::notify::stopping();
    app.draining.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = server.await;
    // A second signal during the drain exits at once.
    let drained = tokio::select! {
        d = app.wait_idle(drain) => d,
        _ = term.recv() => std::process::exit(1),
        _ = int.recv() => std::process::exit(1),
    };
    if !drained {
        tracing::warn!("drain bound reached with requests in progress");
    }
    if let Some(s) = app.scheduler.get() {
        s.shutdown(flush).await;
    }
    if let Some(c) = app.cluster.get() {
        // Leaving the group hands this node's partitions to the others at once.
        c.shutdown(flush).await;
    }
    let snap = app.config.load_full();
    for w in snap.writers.clusters.values() {
        w.flush(flush).await;
    }
    let _ = close_tx.send(true);
    // Connections linger briefly to answer requests already on the wire (20); the process
    // must outlive that, or those requests are reset when it exits.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while app.connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("shutdown complete");
    Ok(())
}
