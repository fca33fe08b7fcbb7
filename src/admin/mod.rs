//! Admin HTTP: `/health`, `/ready`, `/status`, `/metrics` and the delay endpoints
//! (operations.md §4), served by [`crate::http::server`] (keep-alive, bounded by
//! [`Limits::ADMIN`]).

mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::delay::DelayService;
use crate::http::server::{serve, Limits};
use crate::http::{
    header, json, with_header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
};
use crate::live::LiveConfig;
use crate::metrics::labels::{Reason, Tls};
use crate::metrics::Metrics;
use crate::security::tls::HANDSHAKE_RECORD;
use crate::security::Security;
use crate::server::traffic::Traffic;
use prometheus_client::registry::Registry;

/// What the admin endpoints read and act on.
pub struct Admin {
    /// The configuration in force.
    pub live: Arc<LiveConfig>,
    /// Connections, requests in progress, draining.
    pub traffic: Arc<Traffic>,
    /// The proxy's own metric families.
    pub metrics: Arc<Metrics>,
    /// Every family and collector, rendered by `/metrics`.
    pub registry: Arc<Registry>,
    /// TLS (with `server.adminTls`).
    pub security: Arc<Security>,
    /// Delay status, dead letters, re-drive and purge.
    pub delay: Arc<DelayService>,
}

/// Serves the admin port until the task is dropped at shutdown; each connection is a task of
/// `tasks`.
pub async fn run(app: Arc<Admin>, listener: TcpListener, tasks: crate::lifecycle::Tasks) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let app = app.clone();
        tasks.spawn_until_shutdown(async move {
            // One bound for the TLS handshake and the requests together: a stuck client is cut
            // after 10 s (plus the grace of a response in progress) whichever part it stalls in.
            let deadline = Instant::now() + Limits::ADMIN.lifetime;
            let _ = accept_one(app, stream, deadline).await;
        });
    }
}

/// Binds the admin port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// With `server.adminTls`, a TLS client gets TLS; plaintext is served to loopback clients only, so
/// `control.sh` and the CLI on the host keep working.
async fn accept_one(app: Arc<Admin>, stream: TcpStream, deadline: Instant) -> std::io::Result<()> {
    let loopback = stream
        .peer_addr()
        .map(|a| a.ip().to_canonical().is_loopback())
        .unwrap_or(false);
    let acceptor = match app.live.settings().server.admin_tls {
        true => app.security.tls.acceptor(),
        false => None,
    };
    let Some(acceptor) = acceptor else {
        handle(app, stream, loopback, deadline).await;
        return Ok(());
    };
    let count = |result: &'static str| {
        let labels = Tls {
            port: "admin",
            result,
        };
        app.metrics.tls_connections.get_or_create(&labels).inc();
    };
    let mut first = [0u8; 1];
    if tokio::time::timeout_at(deadline, stream.peek(&mut first)).await?? == 0 {
        return Ok(());
    }
    if first[0] == HANDSHAKE_RECORD {
        // Out of time: dropped uncounted, as before.
        let Ok(accepted) = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await else {
            return Ok(());
        };
        let Ok(tls) = accepted else {
            count("handshake_failed");
            return Ok(());
        };
        count("tls");
        handle(app.clone(), tls, loopback, deadline).await;
        return Ok(());
    }
    if !loopback {
        count("plaintext_refused");
        let refuse = |_| async {
            let body = json!({"error": "the admin port serves remote clients over TLS only"});
            // Closed once sent: nothing else is served on this connection.
            let r = json(StatusCode::FORBIDDEN, &body);
            with_header(r, header::CONNECTION, HeaderValue::from_static("close"))
        };
        let _ = serve(stream, &limits_until(deadline), refuse).await;
        return Ok(());
    }
    count("plaintext");
    handle(app, stream, loopback, deadline).await;
    Ok(())
}

/// The admin limits, with the connection's lifetime ending at `deadline`.
fn limits_until(deadline: Instant) -> Limits {
    Limits {
        lifetime: deadline.saturating_duration_since(Instant::now()),
        ..Limits::ADMIN
    }
}

/// Serves admin requests on one accepted connection until `deadline`.
async fn handle<S>(app: Arc<Admin>, stream: S, loopback: bool, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Errors are the peer's: gone, too slow, or not speaking HTTP.
    let limits = limits_until(deadline);
    let _ = serve(stream, &limits, |req| route(&app, req, loopback)).await;
}

/// Refusals first, then the endpoint for (method, path).
async fn route(app: &Admin, req: Request, loopback: bool) -> Response {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    if let Some(why) = refusal(app, req.method(), path, loopback, req.headers()) {
        app.metrics
            .admin_denied
            .get_or_create(&Reason { reason: why })
            .inc();
        return match why {
            "loopback" => json(
                StatusCode::FORBIDDEN,
                &json!({"error": "mutations only from loopback"}),
            ),
            _ => {
                let body = json!({"error": "a valid bearer token is required"});
                let r = json(StatusCode::UNAUTHORIZED, &body);
                with_header(
                    r,
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                )
            }
        };
    }
    match (req.method(), path) {
        (&Method::GET, "/health") => pages::health(),
        (&Method::GET, "/ready") => pages::ready(app),
        (&Method::GET, "/status") => pages::status(app),
        (&Method::GET, "/metrics") => pages::metrics(app, req.headers()),
        (&Method::GET, "/delay/dead") => pages::delay_dead(app, query).await,
        (&Method::GET, "/delay/cluster") => pages::delay_cluster(app),
        (&Method::GET, p) if p.starts_with("/delay/") => {
            let forwarded = req
                .headers()
                .contains_key(crate::delay::cluster::forward::FORWARDED_HEADER);
            pages::delay_status(app, &p["/delay/".len()..], forwarded).await
        }
        (&Method::POST, "/loglevel") => pages::loglevel(query),
        (&Method::POST, p) if p.starts_with("/delay/dead/") => {
            pages::delay_dead_action(app, &p["/delay/dead/".len()..]).await
        }
        _ => json(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

/// Why an admin request is refused before it runs.
fn refusal(
    app: &Admin,
    method: &Method,
    path: &str,
    loopback: bool,
    headers: &HeaderMap,
) -> Option<&'static str> {
    let settings = app.live.settings();
    let server = &settings.server;
    let mutating = method == Method::POST;
    if mutating && server.admin_mutations_loopback_only && !loopback {
        return Some("loopback");
    }
    let public = matches!(path, "/health" | "/ready");
    if let Some(token) = &server.admin_token {
        let needs_token = mutating || (server.admin_token_for_reads && !public);
        if needs_token && !bearer_matches(headers, token) {
            return Some("token");
        }
    }
    None
}

/// Whether the request carries `Authorization: Bearer <token>`; compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers.get_all(header::AUTHORIZATION).iter().find_map(|v| {
        let (scheme, rest) = v.to_str().ok()?.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let Some(given) = given else { return false };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
