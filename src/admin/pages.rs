//! The admin pages: readiness, `/status`, the `/metrics` page, and the delay endpoints.

use std::fmt::Write as _;

use serde_json::json;

use super::Admin;
use crate::metrics::gauge;

pub(super) fn not_ready_reasons(app: &Admin) -> Vec<&'static str> {
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

pub(super) fn status_json(app: &Admin) -> serde_json::Value {
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

pub(super) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `GET /delay/{id}`: the lifecycle of any add or occurrence id (operations.md §4).
pub(super) async fn delay_status(app: &Admin, raw_id: &str, forwarded: bool) -> (u16, String) {
    let service = &app.delay;
    let settings = app.live.settings();
    let token = settings.server.admin_token.as_deref();
    service.status(raw_id, forwarded, token).await
}

/// `GET /delay/dead?topic=&limit=`.
pub(super) async fn delay_dead(app: &Admin, query: &str) -> (u16, String) {
    let service = &app.delay;
    let topic = query_param(query, "topic")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    service.dead_letters(topic, limit).await
}

/// `POST /delay/dead/{id}/{k}/redrive|purge`.
pub(super) async fn delay_dead_action(app: &Admin, rest: &str) -> (u16, String) {
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
    app.delay.dead_action(id.to_string(), k, action).await
}

/// Renders the whole `/metrics` page: the proxy's own families plus gauges read now.
pub(super) fn metrics(app: &Admin) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# HELP pproxy_build_info Build information.\n# TYPE pproxy_build_info gauge\npproxy_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("PPROXY_GIT_COMMIT")
    );
    app.metrics.render(&mut out);
    gauge(
        &mut out,
        "pproxy_inflight_requests",
        "Requests in progress.",
        app.traffic.inflight() as f64,
    );
    gauge(
        &mut out,
        "pproxy_connections",
        "Open Thrift connections.",
        app.traffic.connections() as f64,
    );
    let snap = app.live.snapshot();
    gauge(
        &mut out,
        "pproxy_config_generation",
        "Current configuration generation.",
        snap.generation as f64,
    );
    gauge(
        &mut out,
        "pproxy_topics_admitted",
        "Admitted topics.",
        snap.topics.all().len() as f64,
    );
    app.delay.render_metrics(&mut out);
    out
}
