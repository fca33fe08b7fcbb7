//! The admin pages: readiness, `/status`, the `/metrics` page, and the delay endpoints. Each
//! answers a whole [`Response`], its content type included.

use serde_json::json;

use super::Admin;
use crate::http::{
    header, json, respond, with_header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode,
    TEXT,
};
use crate::metrics::scrape::{render, Format};

/// A JSON body the delay service already rendered, with its status code.
fn rendered((status, body): (u16, String)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, crate::http::JSON, body)
}

/// `GET /health`.
pub(super) fn health() -> Response {
    respond(StatusCode::OK, TEXT, "OK")
}

/// `GET /ready`: 503 with the reasons while not ready.
pub(super) fn ready(app: &Admin) -> Response {
    let reasons = not_ready_reasons(app);
    if reasons.is_empty() {
        json(StatusCode::OK, &json!({"ready": true}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "reasons": reasons}),
        )
    }
}

/// `GET /status`.
pub(super) fn status(app: &Admin) -> Response {
    json(StatusCode::OK, &status_json(app))
}

/// `GET /delay/cluster`.
pub(super) fn delay_cluster(app: &Admin) -> Response {
    rendered(app.delay.cluster_json())
}

/// `GET /delay/cluster/applied?partition=&offset=&waitMs=`: asked by a node that journaled a
/// cancel, before it answers it (src/delay/cluster/confirm.rs).
pub(super) async fn delay_cluster_applied(app: &Admin, query: &str) -> Response {
    let num = |name: &str| query_param(query, name).and_then(|v| v.parse::<i64>().ok());
    let (Some(p), Some(offset)) = (num("partition"), num("offset")) else {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "give ?partition=<p>&offset=<offset>"}),
        );
    };
    let Ok(p) = i32::try_from(p) else {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "no such partition"}),
        );
    };
    let wait = std::time::Duration::from_millis(num("waitMs").unwrap_or(0).max(0) as u64);
    rendered(app.delay.cluster_applied(p, offset, wait).await)
}

/// `POST /loglevel?filter=<filter>`.
pub(super) fn loglevel(query: &str) -> Response {
    match query_param(query, "filter").map(crate::logging::set_filter) {
        Some(Ok(())) => json(
            StatusCode::OK,
            &json!({"filter": query_param(query, "filter")}),
        ),
        Some(Err(e)) => json(StatusCode::BAD_REQUEST, &json!({"error": e})),
        None => json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "give ?filter=<filter>"}),
        ),
    }
}

fn not_ready_reasons(app: &Admin) -> Vec<&'static str> {
    let mut r = Vec::new();
    if app.traffic.is_draining() {
        r.push("draining");
    }
    r.extend(app.delay.not_ready());
    if !app.traffic.is_listening() {
        r.push("thrift port not bound");
    }
    r
}

fn status_json(app: &Admin) -> serde_json::Value {
    let snap = app.live.snapshot();
    let mut v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSec": app.traffic.uptime().as_secs(),
        "node": app.live.node(),
        "mode": match app.live.settings().mode() {
            crate::config::settings::Mode::Embedded => "embedded",
            crate::config::settings::Mode::Local(_) => "local",
            crate::config::settings::Mode::ZooKeeper => "zookeeper",
        },
        "embeddedBootstrap": app.live.embedded().map(|e| e.bootstrap().to_string()),
        "connections": app.traffic.connections(),
        "inflightRequests": app.traffic.inflight(),
        "draining": app.traffic.is_draining(),
    });
    if let (Some(o), serde_json::Value::Object(s)) = (v.as_object_mut(), snap.status_json()) {
        o.extend(s);
    }
    if let Some(sched) = app.delay.status_json() {
        v["scheduler"] = sched;
    }
    v
}

/// A path segment or query value as text: ids and topics arrive percent-encoded from browsers
/// (the console encodes every value it puts into a URL).
fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `GET /delay/{id}`: the lifecycle of any add or occurrence id (operations.md §4).
pub(super) async fn delay_status(app: &Admin, raw_id: &str, forwarded: bool) -> Response {
    let service = &app.delay;
    let settings = app.live.settings();
    let token = settings.server.admin_token.as_deref();
    rendered(service.status(&decoded(raw_id), forwarded, token).await)
}

/// `GET /delay/dead?topic=&limit=`: in cluster mode every node's, unless `forwarded`; a list
/// with parts missing says why in `X-Pproxy-Incomplete`.
pub(super) async fn delay_dead(app: &Admin, query: &str, forwarded: bool) -> Response {
    let service = &app.delay;
    let topic = query_param(query, "topic")
        .filter(|t| !t.is_empty())
        .map(decoded);
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let settings = app.live.settings();
    let token = settings.server.admin_token.as_deref();
    let list = service.dead_letters(topic, limit, forwarded, token).await;
    let r = rendered(list.answer);
    match list.incomplete.map(|why| header_text(&why)) {
        Some(why) => with_header(r, HeaderName::from_static(INCOMPLETE), why),
        None => r,
    }
}

/// The header naming what a cluster-wide dead-letter list is missing.
pub(super) const INCOMPLETE: &str = "x-pproxy-incomplete";

/// `text` as a header value: visible ASCII, other characters replaced by `?`.
fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("incomplete"))
}

/// `POST /delay/dead/{id}/{k}/redrive|purge` (sent on to the owner in cluster mode unless
/// `forwarded`).
pub(super) async fn delay_dead_action(app: &Admin, rest: &str, forwarded: bool) -> Response {
    let parts: Vec<&str> = rest.rsplitn(3, '/').collect();
    let (Some(action), Some(k), Some(id)) = (parts.first(), parts.get(1), parts.get(2)) else {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "expected /delay/dead/{id}/{k}/redrive|purge"}),
        );
    };
    let Ok(k) = k.parse::<u64>() else {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "k must be a number"}),
        );
    };
    let settings = app.live.settings();
    let token = settings.server.admin_token.as_deref();
    rendered(
        app.delay
            .dead_action(decoded(id), k, action, forwarded, token)
            .await,
    )
}

/// `GET /metrics`: every family, in the format the scraper's `Accept` asks for.
pub(super) fn metrics(app: &Admin, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    respond(
        StatusCode::OK,
        format.content_type(),
        render(&app.registry, format),
    )
}
