//! Admin HTTP: `/health`, `/ready`, `/status`, `/metrics` and the delay endpoints
//! (operations.md §4), served by [`crate::http::server`] (keep-alive, bounded by
//! [`Limits::ADMIN`]).

mod console;
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

/// Refusals first, then the endpoint for (method, path); no answer is to be sniffed into
/// another type than it declares.
async fn route(app: &Admin, req: Request, loopback: bool) -> Response {
    let r = dispatch(app, req, loopback).await;
    let nosniff = HeaderValue::from_static("nosniff");
    with_header(r, header::X_CONTENT_TYPE_OPTIONS, nosniff)
}

/// The answer to one admin request.
async fn dispatch(app: &Admin, req: Request, loopback: bool) -> Response {
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
                &json!({"error": "mutations only from loopback (or, in cluster mode, forwarded by a node with the admin token)"}),
            ),
            "cross_site" => json(
                StatusCode::FORBIDDEN,
                &json!({"error": "cross-site request refused (docs/SECURITY.md, admin HTTP)"}),
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
    let forwarded = req
        .headers()
        .contains_key(crate::delay::cluster::forward::FORWARDED_HEADER);
    match (req.method(), path) {
        (&Method::GET, "/health") => pages::health(),
        (&Method::GET, "/ready") => pages::ready(app),
        (&Method::GET, "/status") => pages::status(app),
        (&Method::GET, "/metrics") => pages::metrics(app, req.headers()),
        (&Method::GET, "/delay/dead") => pages::delay_dead(app, query, forwarded).await,
        (&Method::GET, "/delay/cluster") => pages::delay_cluster(app),
        (&Method::GET, "/delay/cluster/applied") => pages::delay_cluster_applied(app, query).await,
        (&Method::GET, p) if p == "/ui" || p.starts_with("/ui/") => console::get(app, p),
        (&Method::GET, p) if p.starts_with("/delay/") => {
            pages::delay_status(app, &p["/delay/".len()..], forwarded).await
        }
        (&Method::POST, "/loglevel") => pages::loglevel(query),
        (&Method::POST, p) if p.starts_with("/delay/dead/") => {
            pages::delay_dead_action(app, &p["/delay/dead/".len()..], forwarded).await
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
    let peer = settings.scheduler.cluster.enabled && forwarded_by_peer(headers, server);
    if mutating && server.admin_mutations_loopback_only && !loopback && !peer {
        return Some("loopback");
    }
    if mutating && cross_site(headers, server.admin_token.is_some()) {
        return Some("cross_site");
    }
    let public = matches!(path, "/health" | "/ready") || console::is_public(path);
    if let Some(token) = &server.admin_token {
        let needs_token = mutating || (server.admin_token_for_reads && !public);
        if needs_token && !bearer_matches(headers, token) {
            return Some("token");
        }
    }
    None
}

/// Whether a request was forwarded by another node of the cluster: marked forwarded and carrying
/// the admin token. The node that forwarded it applied its own loopback rule to the original
/// request, and the token is what proves a peer; without a token no peer can be told apart.
fn forwarded_by_peer(
    headers: &HeaderMap,
    server: &crate::config::settings::ServerSettings,
) -> bool {
    headers.contains_key(crate::delay::cluster::forward::FORWARDED_HEADER)
        && server
            .admin_token
            .as_deref()
            .is_some_and(|t| bearer_matches(headers, t))
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

/// Whether a POST may have been sent by a page of another site, which must never mutate
/// (docs/SECURITY.md, "Cross-site requests"). Non-browser clients (the CLI, curl) send none of
/// the headers looked at here and pass; a browser always sends `Origin` or `Sec-Fetch-Site`
/// with a POST, and then it must be the console itself:
/// - the bodies an HTML form can send (`application/x-www-form-urlencoded`,
///   `multipart/form-data`, `text/plain`) are refused from anyone;
/// - `Sec-Fetch-Site` must be `same-origin` (or `none`: typed by the user);
/// - `Origin` must name the `Host` the request was sent to;
/// - the console's header `X-Pproxy-Console: 1` must be present: no cross-site page can add a
///   custom header without a CORS preflight, which the admin port never grants;
/// - without a token, `Host` must be an IP address or `localhost`, so a page whose DNS name was
///   rebound to this host cannot pass as same-origin.
fn cross_site(headers: &HeaderMap, token_set: bool) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("");
        let essence = essence.trim().to_ascii_lowercase();
        if matches!(
            essence.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) {
            return true;
        }
    }
    let fetch_site = headers.get("sec-fetch-site");
    let origin = headers.get(header::ORIGIN);
    if fetch_site.is_none() && origin.is_none() {
        return false;
    }
    if let Some(site) = fetch_site {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return true;
        }
    }
    let host = text("host").unwrap_or("").to_ascii_lowercase();
    if let Some(origin) = origin {
        let authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, a)| a.trim_end_matches('/').to_ascii_lowercase());
        if authority.as_deref() != Some(host.as_str()) {
            return true;
        }
    }
    if text(CONSOLE_HEADER) != Some("1") {
        return true;
    }
    !token_set && !literal_host(&host)
}

/// The header the console sends with its mutations.
const CONSOLE_HEADER: &str = "x-pproxy-console";

/// Whether a `Host` value names an IP address or `localhost` (with or without a port).
fn literal_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_forwarded_request_is_a_peer_only_with_the_token() {
        let mut server = crate::config::settings::ServerSettings::default();
        let fwd = headers(&[("x-pproxy-forwarded", "1"), ("authorization", "Bearer s3")]);
        assert!(!forwarded_by_peer(&fwd, &server), "no token set: no peer");
        server.admin_token = Some("s3".into());
        assert!(forwarded_by_peer(&fwd, &server));
        let wrong = headers(&[("x-pproxy-forwarded", "1"), ("authorization", "Bearer s4")]);
        assert!(!forwarded_by_peer(&wrong, &server), "wrong token");
        let unmarked = headers(&[("authorization", "Bearer s3")]);
        assert!(!forwarded_by_peer(&unmarked, &server), "not forwarded");
    }

    #[test]
    fn non_browser_posts_pass() {
        // The CLI: Host, Connection and maybe Authorization, no body.
        let cli = headers(&[("host", "127.0.0.1:9614"), ("authorization", "Bearer t")]);
        assert!(!cross_site(&cli, true));
        assert!(!cross_site(&headers(&[("host", "pproxy-01:9614")]), false));
    }

    #[test]
    fn form_bodies_are_refused_from_anyone() {
        for ct in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "Text/Plain;charset=UTF-8",
        ] {
            let mut h = headers(&[("host", "127.0.0.1:9614")]);
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert!(cross_site(&h, false), "{ct}");
        }
    }

    #[test]
    fn browser_posts_must_be_the_console_on_its_own_origin() {
        let console = [
            ("host", "127.0.0.1:9614"),
            ("origin", "http://127.0.0.1:9614"),
            ("sec-fetch-site", "same-origin"),
            ("x-pproxy-console", "1"),
        ];
        assert!(!cross_site(&headers(&console), false));
        let mut v6 = console;
        v6[0] = ("host", "[::1]:9614");
        v6[1] = ("origin", "https://[::1]:9614");
        assert!(!cross_site(&headers(&v6), false));
        let cases: [(usize, (&str, &str)); 5] = [
            (1, ("origin", "http://evil.example")),
            (1, ("origin", "null")),
            (2, ("sec-fetch-site", "cross-site")),
            (2, ("sec-fetch-site", "same-site")),
            (3, ("x-pproxy-console", "0")),
        ];
        for (i, (k, v)) in cases {
            let mut h = console;
            h[i] = (k, v);
            assert!(cross_site(&headers(&h), true), "{k}: {v}");
        }
        // A cross-site fetch without the custom header, as a `no-cors` request would be.
        let no_cors = [("host", "127.0.0.1:9614"), ("sec-fetch-site", "cross-site")];
        assert!(cross_site(&headers(&no_cors), true));
    }

    #[test]
    fn rebound_names_need_the_token() {
        let rebound = [
            ("host", "evil.example:9614"),
            ("origin", "http://evil.example:9614"),
            ("sec-fetch-site", "same-origin"),
            ("x-pproxy-console", "1"),
        ];
        assert!(cross_site(&headers(&rebound), false));
        // With a token the page must also know it, which a rebound page does not.
        assert!(!cross_site(&headers(&rebound), true));
        assert!(literal_host("localhost:9614") && literal_host("10.0.0.1"));
        assert!(!literal_host("localhost.evil.example"));
    }
}
