//! Admin HTTP: `/health`, `/ready`, `/status`, `/metrics` and the delay endpoints
//! (operations.md §4). Minimal HTTP/1.1, one request per connection.

mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::delay::DelayService;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::security::tls::HANDSHAKE_RECORD;
use crate::security::Security;
use crate::server::traffic::Traffic;

/// What the admin endpoints read and act on.
pub struct Admin {
    /// The configuration in force.
    pub live: Arc<LiveConfig>,
    /// Connections, requests in progress, draining.
    pub traffic: Arc<Traffic>,
    /// The proxy's own metric families.
    pub metrics: Arc<Metrics>,
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
            let _ = tokio::time::timeout(Duration::from_secs(10), accept_one(app, stream)).await;
        });
    }
}

/// Binds the admin port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// With `server.adminTls`, a TLS client gets TLS; plaintext is served to loopback clients only, so
/// `control.sh` and the CLI on the host keep working.
async fn accept_one(app: Arc<Admin>, stream: TcpStream) -> std::io::Result<()> {
    let loopback = stream
        .peer_addr()
        .map(|a| a.ip().to_canonical().is_loopback())
        .unwrap_or(false);
    let acceptor = match app.live.settings().server.admin_tls {
        true => app.security.tls.acceptor(),
        false => None,
    };
    let Some(acceptor) = acceptor else {
        return handle(app, stream, loopback).await;
    };
    let count = |result: &str| {
        let labels = ("admin".to_string(), result.to_string());
        app.metrics.tls_connections.add(labels, 1);
    };
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(());
    }
    if first[0] == HANDSHAKE_RECORD {
        let Ok(tls) = acceptor.accept(stream).await else {
            count("handshake_failed");
            return Ok(());
        };
        count("tls");
        return handle(app.clone(), tls, loopback).await;
    }
    if !loopback {
        count("plaintext_refused");
        let mut stream = stream;
        let body = json!({"error": "the admin port serves remote clients over TLS only"});
        return respond(&mut stream, 403, "application/json", &body.to_string()).await;
    }
    count("plaintext");
    handle(app, stream, loopback).await
}

/// Why an admin request is refused before it runs.
fn refusal(
    app: &Admin,
    method: &str,
    path: &str,
    loopback: bool,
    head: &str,
) -> Option<(u16, &'static str)> {
    let settings = app.live.settings();
    let server = &settings.server;
    let mutating = method == "POST";
    if mutating && server.admin_mutations_loopback_only && !loopback {
        return Some((403, "loopback"));
    }
    let public = matches!(path, "/health" | "/ready");
    if let Some(token) = &server.admin_token {
        let needs_token = mutating || (server.admin_token_for_reads && !public);
        if needs_token && !bearer_matches(head, token) {
            return Some((401, "token"));
        }
    }
    None
}

/// Whether the request head carries `Authorization: Bearer <token>`; compared in constant time.
fn bearer_matches(head: &str, token: &str) -> bool {
    let given = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let Some(given) = given else { return false };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle<S>(app: Arc<Admin>, mut stream: S, loopback: bool) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if let Some((status, why)) = refusal(&app, method, path, loopback, &head) {
        app.metrics.admin_denied.add((why.into(),), 1);
        let body = match why {
            "loopback" => json!({"error": "mutations only from loopback"}),
            _ => json!({"error": "a valid bearer token is required"}),
        };
        return respond(&mut stream, status, "application/json", &body.to_string()).await;
    }
    let (status, body) = match (method, path) {
        ("GET", "/delay/dead") => pages::delay_dead(&app, query).await,
        ("GET", "/delay/cluster") => app.delay.cluster_json(),
        ("GET", p) if p.starts_with("/delay/") => {
            let forwarded = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, _)| {
                    k.trim()
                        .eq_ignore_ascii_case(crate::delay::cluster::forward::FORWARDED_HEADER)
                })
            });
            pages::delay_status(&app, &p["/delay/".len()..], forwarded).await
        }
        ("POST", "/loglevel") => {
            match pages::query_param(query, "filter").map(crate::logging::set_filter) {
                Some(Ok(())) => (
                    200,
                    json!({"filter": pages::query_param(query, "filter")}).to_string(),
                ),
                Some(Err(e)) => (400, json!({"error": e}).to_string()),
                None => (400, json!({"error": "give ?filter=<filter>"}).to_string()),
            }
        }
        ("POST", p) if p.starts_with("/delay/dead/") => {
            pages::delay_dead_action(&app, &p["/delay/dead/".len()..]).await
        }
        ("GET", "/health") => (200, "OK".to_string()),
        ("GET", "/ready") => {
            let reasons = pages::not_ready_reasons(&app);
            if reasons.is_empty() {
                (200, json!({"ready": true}).to_string())
            } else {
                (503, json!({"ready": false, "reasons": reasons}).to_string())
            }
        }
        ("GET", "/status") => (200, pages::status_json(&app).to_string()),
        ("GET", "/metrics") => (200, pages::metrics(&app)),
        _ => (404, json!({"error": "not found"}).to_string()),
    };
    let ctype = match path {
        "/health" => "text/plain",
        // The Prometheus text exposition format 0.0.4.
        "/metrics" => "text/plain; version=0.0.4; charset=utf-8",
        _ => "application/json",
    };
    respond(&mut stream, status, ctype, &body).await
}

async fn respond<S>(stream: &mut S, status: u16, ctype: &str, body: &str) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let auth = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}
