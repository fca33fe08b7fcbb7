//! Admin HTTP: `/health`, `/ready`, `/status` (operations.md §4). Minimal HTTP/1.1, one request
//! per connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;

/// Serves the admin port until the process exits.
pub async fn run(app: Arc<App>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(app, stream)).await;
        });
    }
}

/// Binds the admin port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(app: Arc<App>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
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
        _ => (404, json!({"error": "not found"}).to_string()),
    };
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let ctype = if path == "/health" {
        "text/plain"
    } else {
        "application/json"
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        "mode": match app.settings.mode() {
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
    v
}
