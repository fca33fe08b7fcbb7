//! Admin HTTP: `/health`, `/ready`, `/status` (operations.md §4). Minimal HTTP/1.1, one request
//! per connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;
use crate::security::tls::HANDSHAKE_RECORD;

/// Serves the admin port until the task is dropped at shutdown; each connection is a task of
/// `tasks`.
pub async fn run(app: Arc<App>, listener: TcpListener, tasks: crate::lifecycle::Tasks) {
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
async fn accept_one(app: Arc<App>, stream: TcpStream) -> std::io::Result<()> {
    let loopback = stream
        .peer_addr()
        .map(|a| a.ip().to_canonical().is_loopback())
        .unwrap_or(false);
    let acceptor = match app.settings.load().server.admin_tls {
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
    app: &App,
    method: &str,
    path: &str,
    loopback: bool,
    head: &str,
) -> Option<(u16, &'static str)> {
    let settings = app.settings.load();
    let server = &settings.server;
    let mutating = method == "POST";
    if mutating && server.admin_mutations_loopback_only && !loopback {
        return Some((403, "loopback"));
    }
    let public = matches!(path, "/health" | "/ready");
    let needs_token =
        !server.admin_token.is_empty() && (mutating || (server.admin_token_for_reads && !public));
    if needs_token && !bearer_matches(head, &server.admin_token) {
        return Some((401, "token"));
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

async fn handle<S>(app: Arc<App>, mut stream: S, loopback: bool) -> std::io::Result<()>
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
        ("GET", "/delay/dead") => delay_dead(&app, query).await,
        ("GET", "/delay/cluster") => match app.cluster.get() {
            Some(c) => (200, c.status_json().to_string()),
            None => (404, json!({"error": "cluster mode is off"}).to_string()),
        },
        ("GET", p) if p.starts_with("/delay/") && app.cluster.get().is_some() => {
            let forwarded = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, _)| {
                    k.trim()
                        .eq_ignore_ascii_case(crate::delay::cluster::forward::FORWARDED_HEADER)
                })
            });
            clustered_delay_status(&app, &p["/delay/".len()..], forwarded).await
        }
        ("GET", p) if p.starts_with("/delay/") => delay_status(&app, &p["/delay/".len()..]).await,
        ("POST", "/loglevel") => match query_param(query, "filter").map(crate::logging::set_filter)
        {
            Some(Ok(())) => (
                200,
                json!({"filter": query_param(query, "filter")}).to_string(),
            ),
            Some(Err(e)) => (400, json!({"error": e}).to_string()),
            None => (400, json!({"error": "give ?filter=<filter>"}).to_string()),
        },
        ("POST", p) if p.starts_with("/delay/dead/") => {
            delay_dead_action(&app, &p["/delay/dead/".len()..]).await
        }
        ("GET", "/health") => (200, "OK".to_string()),
        ("GET", "/ready") => {
            let reasons = not_ready_reasons(&app);
            if reasons.is_empty() {
                (200, json!({"ready": true}).to_string())
            } else {
                (503, json!({"ready": false, "reasons": reasons}).to_string())
            }
        }
        ("GET", "/status") => (200, status_json(&app).to_string()),
        ("GET", "/metrics") => (200, crate::metrics::render_page(&app)),
        _ => (404, json!({"error": "not found"}).to_string()),
    };
    let ctype = if path == "/health" {
        "text/plain"
    } else {
        "application/json"
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

fn not_ready_reasons(app: &App) -> Vec<&'static str> {
    let mut r = Vec::new();
    if app.is_draining() {
        r.push("draining");
    }
    match app.scheduler.get() {
        None if app.cluster.get().is_some() => {}
        None => r.push("scheduler not open"),
        // Delay adds and cancels answer 10 until the store is reopened (disk full, read-only).
        Some(s) if s.store_failed() => r.push("delay store failed"),
        Some(_) => {}
    }
    if !app.listening.load(Ordering::Acquire) {
        r.push("thrift port not bound");
    }
    r
}

fn status_json(app: &App) -> serde_json::Value {
    let snap = app.config.load();
    let mut v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSec": app.started.elapsed().as_secs(),
        "node": app.node,
        "mode": match app.settings.load().mode() {
            crate::config::settings::Mode::Embedded => "embedded",
            crate::config::settings::Mode::Local(_) => "local",
            crate::config::settings::Mode::ZooKeeper => "zookeeper",
        },
        "embeddedBootstrap": app.embedded.as_ref().map(|e| e.bootstrap().to_string()),
        "connections": app.connections.load(Ordering::Relaxed),
        "inflightRequests": app.inflight.load(Ordering::Relaxed),
        "draining": app.is_draining(),
    });
    if let (Some(o), serde_json::Value::Object(s)) = (v.as_object_mut(), snap.status_json()) {
        o.extend(s);
    }
    if let Some(sched) = app.scheduler.get() {
        let (loaded, inflight) = sched.loaded_and_inflight();
        let w = sched
            .commit_stats()
            .fired_through_ms
            .load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        v["scheduler"] = json!({
            "pending": sched.stats().pending.load(Ordering::Relaxed),
            "loaded": loaded,
            "inflight": inflight,
            "dead": sched.dead_count(),
            "firedThroughLagMs": if w > 0 { (now - w).max(0) } else { 0 },
            "storeFailed": sched.store_failed(),
            "storeReopens": sched.store_reopens(),
        });
    }
    v
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `GET /delay/{id}`: the lifecycle of any add or occurrence id (operations.md §4).
async fn delay_status(app: &App, raw_id: &str) -> (u16, String) {
    let Some(sched) = app.scheduler.get() else {
        return (503, json!({"error": "scheduler not open"}).to_string());
    };
    status_of(sched, raw_id).await
}

/// `GET /delay/{id}` in cluster mode: answered by the owner of the id's journal partition,
/// forwarded there from any other node.
async fn clustered_delay_status(app: &App, raw_id: &str, forwarded: bool) -> (u16, String) {
    let Some(cluster) = app.cluster.get() else {
        return (503, json!({"error": "cluster mode is off"}).to_string());
    };
    let canonical = scheduler::DelayId::canonical_of(raw_id);
    let p = cluster.partition_of_id(&canonical);
    let with_partition = |(code, body): (u16, String), by: &str| match serde_json::from_str::<
        serde_json::Value,
    >(&body)
    {
        Ok(mut v) if v.is_object() => {
            v["journalPartition"] = json!(p);
            if v.get("servedBy").is_none() {
                v["servedBy"] = json!(by);
            }
            (code, v.to_string())
        }
        _ => (code, body),
    };
    if let Some(engine) = cluster.owned(p).and_then(|o| o.engine()) {
        return with_partition(status_of(&engine, raw_id).await, &cluster.node);
    }
    if forwarded {
        // Ownership moved while the query was forwarded: the caller may try again.
        return (
            503,
            json!({"error": "not the owner of this id's partition", "journalPartition": p})
                .to_string(),
        );
    }
    let owner = cluster
        .members()
        .await
        .into_iter()
        .find(|(_, parts)| parts.contains(&p))
        .and_then(|(client_id, _)| crate::delay::cluster::forward::member_address(&client_id));
    let Some((node, admin)) = owner else {
        return (
            503,
            json!({"error": "no node owns this id's partition now", "journalPartition": p})
                .to_string(),
        );
    };
    let settings = app.settings.load();
    let token =
        (!settings.server.admin_token.is_empty()).then_some(settings.server.admin_token.as_str());
    let path = format!("/delay/{raw_id}");
    match crate::delay::cluster::forward::get(&admin, &path, token).await {
        Ok(r) => with_partition(r, &node),
        Err(e) => (
            503,
            json!({"error": format!("owner {node} at {admin}: {e}"), "journalPartition": p})
                .to_string(),
        ),
    }
}

async fn status_of(sched: &scheduler::Scheduler, raw_id: &str) -> (u16, String) {
    let canonical = scheduler::DelayId::canonical_of(raw_id);
    let st = match sched.status(canonical.clone()).await {
        Ok(s) => s,
        Err(e) => return (500, json!({"error": e.to_string()}).to_string()),
    };
    let parsed = scheduler::DelayId::parse(&canonical);
    let mut v = json!({
        "id": raw_id,
        "canonicalId": canonical,
        "state": st.state,
        "type": parsed.as_ref().map(|d| d.dtype),
        "times": parsed.as_ref().map(|d| d.times),
        "expire": parsed.as_ref().map(|d| d.expire),
        "interval": parsed.as_ref().map(|d| d.interval),
    });
    if let Some(r) = &st.record {
        v["topic"] = json!(r.topic);
        v["nextIndex"] = json!(r.next_index);
        v["nextDueMs"] = json!(r.next_due_ms);
        v["attempts"] = json!(r.attempts);
        if !r.owner.is_empty() {
            v["owner"] = json!(r.owner);
        }
        v["nextOccurrenceId"] = json!(r.occurrence_id(r.next_index));
        if r.kind() != scheduler::Kind::Once {
            // Occurrences still to fire, bounded by times (expire may end the loop sooner).
            v["remainingLoops"] = json!((r.id.times - r.next_index as i64).max(0));
        }
    }
    if let Some(d) = &st.done {
        v["finishedMs"] = json!(d.finished_ms);
        v["lastIndex"] = json!(d.last_index);
        v["cancelRequests"] = d
            .cancels
            .iter()
            .map(|(at, r)| json!({"atMs": at, "result": r.name()}))
            .collect();
    }
    if let Some(last) = st.dead.last() {
        v["lastCode"] = json!(last.code);
        v["lastMsg"] = json!(last.msg);
        v["topic"] = json!(last.record.topic);
    }
    v["deadLetters"] = st
        .dead
        .iter()
        .map(|d| json!({"k": d.k, "code": d.code, "msg": d.msg, "deadMs": d.dead_ms}))
        .collect();
    (200, v.to_string())
}

/// `GET /delay/dead?topic=&limit=`.
async fn delay_dead(app: &App, query: &str) -> (u16, String) {
    let scheds = local_schedulers(app);
    if scheds.is_empty() && app.cluster.get().is_none() {
        return (503, json!({"error": "scheduler not open"}).to_string());
    }
    let topic = query_param(query, "topic")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let mut list = Vec::new();
    let merged = scheds.len() > 1;
    for sched in scheds {
        match sched.dead_letters(topic.clone(), limit).await {
            Ok(l) => list.extend(l),
            Err(e) => return (500, json!({"error": e.to_string()}).to_string()),
        }
    }
    if merged {
        // Several partitions in cluster mode: the oldest first, at most `limit` in all.
        list.sort_by_key(|d| d.dead_ms);
        list.truncate(limit);
    }
    let items: Vec<_> = list
        .iter()
        .map(|d| {
            json!({"id": d.id, "k": d.k, "topic": d.record.topic, "key": d.record.occurrence_id(d.k),
                   "code": d.code, "msg": d.msg, "deadMs": d.dead_ms})
        })
        .collect();
    (200, json!(items).to_string())
}

/// The schedulers of this node: the single-node one, or those of its owned partitions.
fn local_schedulers(app: &App) -> Vec<scheduler::Scheduler> {
    if let Some(s) = app.scheduler.get() {
        return vec![s.clone()];
    }
    app.cluster.get().map_or_else(Vec::new, |c| {
        c.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|o| o.engine())
            .collect()
    })
}

/// `POST /delay/dead/{id}/{k}/redrive|purge`.
async fn delay_dead_action(app: &App, rest: &str) -> (u16, String) {
    let parts: Vec<&str> = rest.rsplitn(3, '/').collect();
    let (Some(action), Some(k), Some(id)) = (parts.first(), parts.get(1), parts.get(2)) else {
        return (
            400,
            json!({"error": "expected /delay/dead/{id}/{k}/redrive|purge"}).to_string(),
        );
    };
    let Ok(k) = k.parse::<u64>() else {
        return (400, json!({"error": "k must be a number"}).to_string());
    };
    let (id, k) = (id.to_string(), k);
    let sched = match (app.scheduler.get(), app.cluster.get()) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => {
            let p = c.partition_of_id(&scheduler::DelayId::canonical_of(&id));
            match c.owned(p).and_then(|o| o.engine()) {
                Some(e) => e,
                None => {
                    return (
                        503,
                        json!({"error": "this node does not own the id's journal partition", "journalPartition": p})
                            .to_string(),
                    )
                }
            }
        }
        (None, None) => return (503, json!({"error": "scheduler not open"}).to_string()),
    };
    match *action {
        "redrive" => match sched.redrive(id, k).await {
            Ok(Some(out)) => {
                let (code, msg) = crate::delay::sink::code_and_msg(&out);
                (200, json!({"code": code, "msg": msg}).to_string())
            }
            Ok(None) => (404, json!({"error": "no such dead letter"}).to_string()),
            Err(e) => (500, json!({"error": e.to_string()}).to_string()),
        },
        "purge" => match sched.purge(id, k).await {
            Ok(true) => (200, json!({"purged": true}).to_string()),
            Ok(false) => (404, json!({"error": "no such dead letter"}).to_string()),
            Err(e) => (500, json!({"error": e.to_string()}).to_string()),
        },
        _ => (404, json!({"error": "unknown action"}).to_string()),
    }
}
