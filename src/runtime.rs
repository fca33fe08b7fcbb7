//! Start-up and graceful shutdown of the server (operations.md §3).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::config::settings::{Mode, Settings};
use crate::config::ConfigError;
use crate::delay::service::{DelayService, OpenError};
use crate::forward::snapshot::{load_initial, Build};
use crate::forward::Forwarder;
use crate::lifecycle::{Group, Tasks};
use crate::live::reload::Reloader;
use crate::live::LiveConfig;
use crate::logging::FailureSampler;
use crate::metrics::Metrics;
use crate::security::Security;
use crate::server::traffic::Traffic;
use crate::writer::embedded::EmbeddedHandle;
use prometheus_client::registry::Registry;

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
    /// A second stop request cut the drain short (exit 1); acknowledged delay operations are
    /// durable, fires in flight may repeat after the restart.
    #[error("second stop request during shutdown: drain cut short")]
    Interrupted,
}

impl RunError {
    /// Process exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Bind(..) | RunError::Store(..) => 3,
            RunError::Fatal(_) | RunError::Interrupted => 1,
        }
    }
}

/// Where stop requests come from: SIGTERM and SIGINT for the binary, a channel for a server
/// run inside a test. The first request starts the drain; a second one cuts it short.
pub enum Stops {
    /// SIGTERM and SIGINT, installed once the proxy serves (until then they end the process).
    Signals(Option<(Signal, Signal)>),
    /// Each message (or the sender's drop) is one request.
    Channel(mpsc::Receiver<()>),
}

impl Stops {
    /// Stop requests by signal.
    pub fn signals() -> Self {
        Stops::Signals(None)
    }

    /// Stop requests by message: send `()` to stop.
    pub fn channel() -> (mpsc::Sender<()>, Self) {
        let (tx, rx) = mpsc::channel(2);
        (tx, Stops::Channel(rx))
    }

    fn arm(&mut self) -> Result<(), RunError> {
        if let Stops::Signals(slot @ None) = self {
            let term =
                signal(SignalKind::terminate()).map_err(|e| RunError::Fatal(e.to_string()))?;
            let int =
                signal(SignalKind::interrupt()).map_err(|e| RunError::Fatal(e.to_string()))?;
            *slot = Some((term, int));
        }
        Ok(())
    }

    /// Resolves on the next request.
    async fn next(&mut self) {
        match self {
            Stops::Signals(Some((term, int))) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            Stops::Signals(None) => std::future::pending().await,
            Stops::Channel(rx) => {
                if rx.recv().await.is_none() {
                    // A dropped sender asks once; after that it cannot ask again.
                    *self = Stops::Signals(None);
                }
            }
        }
    }
}

/// Runs the proxy until SIGTERM/SIGINT, then drains and returns.
pub async fn run(
    settings: Settings,
    config_path: Option<PathBuf>,
    pid_file: Option<PathBuf>,
) -> Result<(), RunError> {
    serve(
        settings,
        config_path,
        pid_file,
        Stops::signals(),
        Tasks::new(),
    )
    .await
}

/// Runs the proxy until the first stop request, drains, and returns once every task it spawned
/// through `tasks` has ended (or the bound of the last phase passed, which is logged).
pub async fn serve(
    settings: Settings,
    config_path: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    mut stops: Stops,
    tasks: Tasks,
) -> Result<(), RunError> {
    let node = settings.node_name();
    // Certificates and ACLs are checked before anything starts: a bad file is exit 2.
    let security = Arc::new(Security::new(Security::prepare(&settings)?));
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
    // Every family is registered here; the collectors of values read at scrape time join below.
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let (snapshot, zk_docs) = if settings.mode() == Mode::ZooKeeper {
        // The zk series exists from the start (at 0), so that alerts can tell a ZooKeeper-mode
        // node from one whose `pproxy_zk_connected` is 0 only because it has no ZooKeeper.
        drop(
            metrics
                .config_reloads
                .get_or_create(&crate::metrics::labels::Reload {
                    source: "zk",
                    result: "applied",
                }),
        );
        let (snap, docs) =
            crate::live::zk::initial(&settings, &node, &tasks, &metrics.broker).await;
        (snap, Some(docs))
    } else {
        (
            load_initial(&Build {
                settings: &settings,
                node: &node,
                embedded: embedded.as_ref(),
                previous: None,
                tasks: &tasks,
                broker: &metrics.broker,
            })?,
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
    let thrift_addr = SocketAddr::new(settings.server.bind_addr, settings.port);
    let admin_port = settings.admin_port;
    let admin_addr = SocketAddr::new(settings.server.admin_bind_addr, admin_port);
    let backlog = settings.server.listen_backlog;
    let drain_bound = settings.server.shutdown_drain_ms;
    let flush = settings.forwarding.producer_flush_timeout_ms;
    snapshot
        .warm_up(settings.forwarding.warm_up_timeout_ms)
        .await;
    // Each layer gets what it uses; nothing below the runtime sees the whole.
    let live = LiveConfig::new(settings, snapshot, node, embedded);
    let traffic = Traffic::new();
    let failures = Arc::new(FailureSampler::default());
    let forwarder = Forwarder::new(metrics.clone());
    let delay = DelayService::new(
        live.clone(),
        forwarder.clone(),
        metrics.clone(),
        failures.clone(),
    );
    delay.open(&tasks).await.map_err(|e| match e {
        OpenError::Store(path, why) => RunError::Store(path, why),
        OpenError::Cluster(why) => RunError::Fatal(why),
    })?;
    registry.register_collector(Box::new(crate::server::traffic::Gauges(traffic.clone())));
    registry.register_collector(Box::new(crate::live::Gauges(live.clone())));
    registry.register_collector(Box::new(crate::delay::Gauges(delay.clone())));
    let registry = Arc::new(registry);

    if admin_port != 0 {
        let l = crate::admin::bind(admin_addr)
            .await
            .map_err(|e| RunError::Bind(admin_addr.to_string(), e))?;
        let admin = Arc::new(crate::admin::Admin {
            live: live.clone(),
            traffic: traffic.clone(),
            metrics: metrics.clone(),
            registry,
            security: security.clone(),
            delay: delay.clone(),
        });
        tasks.spawn_until_shutdown(crate::admin::run(admin, l, tasks.clone()));
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
    let phases = Phases {
        accept: tasks.phase(),
        connections: tasks.phase(),
        conns: Group::new(),
    };
    let cx = Arc::new(crate::server::Context {
        live: live.clone(),
        traffic: traffic.clone(),
        metrics: metrics.clone(),
        security: security.clone(),
        failures,
        forwarder,
        delay: delay.clone(),
    });
    let server = tasks.spawn(crate::server::listener::run(
        cx,
        listener,
        tasks.clone(),
        phases.conns.clone(),
        phases.accept.clone(),
        phases.connections.clone(),
    ));
    traffic.set_listening();
    tasks.spawn_until_shutdown(crate::server::trim::after_connection_storms(
        traffic.clone(),
    ));
    delay.start().map_err(|e| RunError::Fatal(e.to_string()))?;
    let reloader = Reloader {
        live: live.clone(),
        security,
        metrics: metrics.clone(),
        tasks: tasks.clone(),
    };
    tasks.spawn_until_shutdown(reloader.watch(config_path));
    if let Some(docs) = zk_docs {
        tasks.spawn_until_shutdown(crate::live::zk::watch(
            live.clone(),
            metrics,
            docs,
            tasks.clone(),
        ));
    }
    stops.arm()?;
    tracing::info!(%thrift_addr, admin_port, "serving");
    crate::notify::ready();

    stops.next().await;
    let ends = Ends {
        live: &live,
        traffic: &traffic,
        delay: &delay,
        tasks: &tasks,
    };
    let result = drain(ends, phases, server, &mut stops, drain_bound, flush).await;
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    if result.is_ok() {
        tracing::info!("shutdown complete");
    }
    result
}

/// What the drain ends, besides the Thrift port's phases.
struct Ends<'a> {
    live: &'a LiveConfig,
    traffic: &'a Traffic,
    delay: &'a DelayService,
    tasks: &'a Tasks,
}

/// The cancellation phases of the Thrift port, ended by `drain` in order.
struct Phases {
    /// Stop accepting connections.
    accept: tokio_util::sync::CancellationToken,
    /// Tell open connections to close (after lingering for requests already on the wire).
    connections: tokio_util::sync::CancellationToken,
    /// The connection tasks, joined once they were told to close.
    conns: Group,
}

/// Connections linger this long to answer requests already on the wire (20): the process must
/// outlive that, or those requests are reset when it exits.
const CONNECTION_LINGER_BOUND: Duration = Duration::from_secs(2);
/// What the admin server, the watchers and whatever else is left get to end once cancelled.
const LAST_TASKS_BOUND: Duration = Duration::from_secs(5);

/// The graceful shutdown of operations.md §3, in order. A second stop request skips what is
/// left to wait for (requests in progress, fires in flight, producer flushes) but still closes
/// the store cleanly, and answers `Interrupted` (exit 1).
async fn drain(
    ends: Ends<'_>,
    phases: Phases,
    server: tokio::task::JoinHandle<()>,
    stops: &mut Stops,
    drain_bound: Duration,
    flush: Duration,
) -> Result<(), RunError> {
    // 1. /ready answers 503 and new requests 20; the listening socket closes.
    tracing::info!("shutdown: draining");
    crate::notify::stopping();
    let Ends {
        live,
        traffic,
        delay,
        tasks,
    } = ends;
    traffic.start_draining();
    phases.accept.cancel();
    let _ = server.await;
    // 2. Requests in progress finish, within the drain bound.
    let interrupted = tokio::select! {
        // A second request already made wins over a drain that is already idle.
        biased;
        _ = stops.next() => true,
        drained = traffic.wait_idle(drain_bound) => {
            if !drained {
                tracing::warn!("drain bound reached with requests in progress");
            }
            false
        }
    };
    if interrupted {
        tracing::warn!("second stop request: skipping the rest of the drain");
    }
    // Once interrupted, no phase waits any more.
    let wait = |bound: Duration| if interrupted { Duration::ZERO } else { bound };
    // 3. The scheduler hands out no new fires, waits for those in flight and persists (a
    //    cluster node leaves the group, handing its partitions over at once).
    delay.shutdown(wait(flush)).await;
    // 4. Producers flush what they were given.
    if !interrupted {
        let snap = live.snapshot_full();
        for w in snap.writers.clusters.values() {
            w.flush(flush).await;
        }
    }
    // 5. Connections close, after lingering for requests already on the wire.
    phases.connections.cancel();
    if !phases.conns.join(wait(CONNECTION_LINGER_BOUND)).await && !interrupted {
        tracing::warn!("connections still open after their linger");
    }
    // 6. Everything else (admin server, watchers) ends; nothing outlives `serve`.
    if !tasks.shutdown(wait(LAST_TASKS_BOUND)).await && !interrupted {
        tracing::warn!(running = tasks.running(), "tasks still running at exit");
    }
    if interrupted {
        Err(RunError::Interrupted)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::proto::codec::Protocol;
    use crate::proto::types::{Call, DelayMessage, Message, Reply};
    use bytes::Bytes;

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    /// The result code and delay id of a reply.
    fn answer(r: Reply) -> (i32, Option<String>) {
        match r {
            Reply::Result { code, delay_id, .. } => (code, delay_id),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// A whole server in this process, on its embedded default with its store in `dir`.
    struct Running {
        tasks: Tasks,
        stop: mpsc::Sender<()>,
        server: tokio::task::JoinHandle<Result<(), RunError>>,
        client: Client,
        addr: String,
        admin: String,
    }

    async fn start(dir: &std::path::Path) -> Running {
        match try_start(dir).await {
            Ok(r) => r,
            Err(e) => panic!("serve ended during start-up: {e:?}"),
        }
    }

    /// `start`, answering the error when serve ends during start-up.
    async fn try_start(dir: &std::path::Path) -> Result<Running, RunError> {
        let mut settings = Settings {
            port: free_port(),
            admin_port: free_port(),
            embedded_kafka: true,
            embedded_delay_topics: vec!["reminders".into()],
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        };
        settings.server.bind_addr = std::net::Ipv4Addr::LOCALHOST.into();
        settings.server.admin_bind_addr = std::net::Ipv4Addr::LOCALHOST.into();
        let addr = format!("127.0.0.1:{}", settings.port);
        let admin = format!("127.0.0.1:{}", settings.admin_port);
        let tasks = Tasks::new();
        let (stop, stops) = Stops::channel();
        let server = tokio::spawn(serve(settings, None, None, stops, tasks.clone()));
        for _ in 0..200 {
            if server.is_finished() {
                return Err(server
                    .await
                    .expect("serve panicked")
                    .expect_err("serve ended without a stop request"));
            }
            if let Ok(client) =
                Client::connect(&addr, Protocol::Compact, Duration::from_secs(10)).await
            {
                return Ok(Running {
                    tasks,
                    stop,
                    server,
                    client,
                    addr,
                    admin,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never accepted on {addr}");
    }

    /// A delay add due in an hour; answers its id.
    async fn add_delay(client: &mut Client) -> String {
        let dm = DelayMessage {
            topic: Some("reminders".into()),
            body: Some(Bytes::from_static(b"later")),
            action: 1,
            dmsgtype: 2,
            timestamp: chrono::Utc::now().timestamp() + 3600,
            ..Default::default()
        };
        let r = client
            .call(&Call::SendDelaySync(Some(dm), 5000))
            .await
            .expect("sendDelaySync");
        let (code, id) = answer(r);
        assert_eq!(code, 0);
        id.expect("delay id")
    }

    async fn stopped(r: Running) -> (Result<(), RunError>, Tasks) {
        let result = tokio::time::timeout(Duration::from_secs(30), r.server)
            .await
            .expect("serve did not return within 30 s")
            .expect("serve panicked");
        (result, r.tasks)
    }

    /// The whole server in this process: it serves a message and a delay add, then stops on
    /// request, and afterwards no task it spawned is alive, neither in its tracker nor on the
    /// runtime (an untracked task, such as the scheduler's minute-long trim loop once was,
    /// fails it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_task_outlives_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let mut r = start(dir.path()).await;
        let msg = Message {
            topic: Some("lifecycle".into()),
            value: Some(Bytes::from_static(b"hello")),
            ..Default::default()
        };
        let reply = r.client.call(&Call::SendSync(Some(msg), 5000)).await;
        assert_eq!(answer(reply.expect("sendSync")).0, 0);
        add_delay(&mut r.client).await;
        // An idle Thrift connection and an admin connection stay open across the stop.
        let _idle = tokio::net::TcpStream::connect(&r.addr).await.expect("idle");
        let _admin = tokio::net::TcpStream::connect(&r.admin)
            .await
            .expect("admin");

        r.stop.send(()).await.expect("stop request");
        let (result, tasks) = stopped(r).await;
        assert!(result.is_ok(), "serve: {result:?}");
        assert_eq!(tasks.running(), 0, "tracked tasks left");
        // Tasks spawned past the tracker show up here: give the runtime a moment to reap.
        let mut alive = metrics.num_alive_tasks();
        for _ in 0..100 {
            if alive <= before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            alive = metrics.num_alive_tasks();
        }
        assert_eq!(
            alive, before,
            "tasks still alive on the runtime after serve returned"
        );
    }

    /// A second stop request during the drain makes `serve` return `Interrupted` (exit 1)
    /// instead of ending the process, with the store closed: the acknowledged add is still
    /// pending when the next server opens the same directory. One runtime thread and two
    /// `try_send`s with no await between them: both requests are queued before the server
    /// sees the first, so the drain always meets the second (with two threads it could finish
    /// before the second arrived on a loaded machine).
    #[tokio::test(flavor = "current_thread")]
    async fn a_second_stop_returns_interrupted_and_keeps_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = start(dir.path()).await;
        let id = add_delay(&mut r.client).await;
        r.stop.try_send(()).expect("first stop");
        r.stop.try_send(()).expect("second stop");
        let (result, tasks) = stopped(r).await;
        assert!(
            matches!(result, Err(RunError::Interrupted)),
            "serve: {result:?}"
        );
        assert_eq!(RunError::Interrupted.exit_code(), 1);
        assert!(tasks.shutdown(Duration::from_secs(5)).await, "tasks left");

        // The store closes on its committer thread just after the last handle is dropped: the
        // next open may find it still locked for a moment.
        let mut restarted = None;
        for _ in 0..100 {
            match try_start(dir.path()).await {
                Ok(r) => {
                    restarted = Some(r);
                    break;
                }
                Err(RunError::Store(_, e)) if e.contains("already open") => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("restart: {e:?}"),
            }
        }
        let r = restarted.expect("the store stayed locked for 5 s");
        let body = crate::http::client::get(&r.admin, &format!("/delay/{id}"), &[], None)
            .await
            .expect("admin")
            .text();
        assert!(
            body.contains("\"pending\""),
            "status of {id} after the restart: {body}"
        );
        r.stop.send(()).await.expect("stop");
        let (result, _) = stopped(r).await;
        assert!(result.is_ok(), "serve: {result:?}");
    }
}
