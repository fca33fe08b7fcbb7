//! Helpers of the operator CLI: time and duration arguments, one Thrift call, one admin GET.

use std::time::Duration;

use pproxy_wire::client::{Client, ClientError};
use pproxy_wire::http::{self, header, HttpError, Method};
use pproxy_wire::types::Reply;
use pproxy_wire::{Call, Protocol};

/// Parses `250ms`, `90s`, `5m`, `2h`, `3d` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a TIME argument: epoch seconds, epoch ms, or RFC 3339. Returns the value as the
/// wire wants it (seconds unless sub-second precision is needed).
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(v) = s.trim().parse::<i64>() {
        return Some(v);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let ms = t.timestamp_millis();
    Some(if ms % 1000 == 0 { ms / 1000 } else { ms })
}

/// A wire timestamp `delta_ms` from now: seconds when whole, else ms.
pub fn from_now(delta_ms: i64) -> i64 {
    let target = chrono::Utc::now().timestamp_millis() + delta_ms;
    if delta_ms % 1000 == 0 {
        // Round up so the message never fires before the requested delay.
        (target + 999) / 1000
    } else {
        target
    }
}

/// One call on a fresh connection.
pub async fn call_once(
    addr: &str,
    protocol: Protocol,
    timeout_ms: i64,
    call: &Call,
) -> Result<Reply, ClientError> {
    let socket_timeout = Duration::from_millis(timeout_ms.max(0) as u64 + 1000);
    let mut c = Client::connect(addr, protocol, socket_timeout).await?;
    c.call(call).await
}

/// A blocking `GET` on the admin endpoint (`http://host:port`): (status, body).
pub fn admin_get(base: &str, path: &str) -> Result<(u16, String), HttpError> {
    admin_request(base, "GET", path)
}

/// A blocking request on the admin endpoint: (status, body). `PPROXY_ADMIN_TOKEN`, when set, is
/// sent as the bearer token (`server.adminToken`).
pub fn admin_request(base: &str, method: &str, path: &str) -> Result<(u16, String), HttpError> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let method = Method::from_bytes(method.as_bytes()).map_err(http::BuildError::from)?;
    let auth = match std::env::var("PPROXY_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => Some(format!("Bearer {t}")),
        _ => None,
    };
    let headers: Vec<_> = auth
        .iter()
        .map(|a| (header::AUTHORIZATION, a.as_str()))
        .collect();
    let answer = http::blocking(http::request(
        method,
        hostport,
        path,
        &headers,
        None,
        http::TIMEOUT,
    ))?;
    Ok((answer.status.as_u16(), answer.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("3d"), Some(259_200_000));
        assert_eq!(parse_duration_ms("5x"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_time("1767225600"), Some(1_767_225_600));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            parse_time("2026-01-01T00:00:00.250Z"),
            Some(1_767_225_600_250)
        );
        let now = chrono::Utc::now().timestamp();
        let t = from_now(10_000);
        assert!(t >= now + 10 && t <= now + 12);
        assert!(
            from_now(250) > 1_000_000_000_000,
            "sub-second delays are sent in ms"
        );
    }
}
