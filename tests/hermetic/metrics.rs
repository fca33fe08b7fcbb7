//! `/metrics` against a pproxy process in embedded mode: the families of operations.md §5 are
//! present and the counters move with traffic.

use std::time::Duration;

use crate::common::prometheus::FAMILIES;
use crate::common::*;
use bytes::Bytes;
use pproxy::proto::{Call, DelayMessage};

fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("series {series} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_exist_and_counters_move() {
    let p = Proxy::start("embeddedDelayTopics: [m_delay]\n");
    let (_, before) = p.http_get("/metrics").expect("scrape");
    // What a Prometheus server expects of the text format (it was application/json).
    let (_, headers, _) = admin_get_full(p.admin_port, "/metrics").expect("scrape");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "exposition format 0.0.4: {headers:?}"
    );
    let mut c = p.client().await;
    for _ in 0..3 {
        assert_eq!(
            call(&mut c, &Call::SendSync(Some(msg("m_orders", b"x")), 3000))
                .await
                .0,
            0
        );
    }
    assert_eq!(
        call(&mut c, &Call::SendSync(Some(msg("bad name", b"x")), 3000))
            .await
            .0,
        13
    );
    assert_eq!(
        call(
            &mut c,
            &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 3000)
        )
        .await
        .0,
        0
    );
    let batch = vec![msg("m_orders", b"1"), msg("m_orders", b"2")];
    assert_eq!(call(&mut c, &Call::SendBatchSync(batch)).await.0, 0);
    let now = chrono::Utc::now().timestamp_millis();
    let add = DelayMessage {
        topic: Some("m_delay".into()),
        body: Some(Bytes::from_static(b"d")),
        action: 1,
        timestamp: now + 300,
        dmsgtype: 2,
        ..Default::default()
    };
    assert_eq!(
        call(&mut c, &Call::SendDelaySync(Some(add), 3000)).await.0,
        0
    );
    // A cancel, a protocol error on a connection of its own (closed by the proxy), a reload.
    let (code, _, id) = call(&mut c, &prometheus::delay_once("m_delay", now + 600_000, 1)).await;
    assert_eq!(code, 0);
    let id = id.expect("delay id");
    assert_eq!(call(&mut c, &delay_cancel("m_delay", &id)).await.0, 0);
    let mut raw = std::net::TcpStream::connect(&p.addr).expect("connect");
    std::io::Write::write_all(&mut raw, &unknown_method_frame()).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(raw);
    p.hup();
    // Wait (bounded) until the delay message has fired rather than for a fixed time.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = p.http_get("/metrics").expect("scrape");
        if page.contains(r#"pproxy_delay_fired_total{topic="m_delay",result="ok"} 1"#) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "delay message never fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, page) = p.http_get("/metrics").expect("scrape");
    assert_eq!(status, 200);
    // A family with labels shows once it has a series; this traffic gives every family one
    // except the rate limiter's (no limited topic in embedded mode; tests/stack/prometheus.rs
    // meets the limiter).
    for &(family, _) in FAMILIES {
        if family == "pproxy_rate_limit_total" {
            continue;
        }
        assert!(
            page.contains(&format!("# TYPE {family} ")),
            "family {family} missing"
        );
    }
    assert!(
        !before.contains("pproxy_requests_total{"),
        "no request counted before traffic"
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_requests_total{method="sendSync",topic="m_orders",code="0"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_requests_total{method="sendSync",topic="_other",code="13"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_requests_total{method="sendSync",topic="carrera_heartbeat",code="0"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&page, r#"pproxy_messages_total{topic="m_orders",code="0"}"#),
        5.0
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_request_duration_seconds_count{method="sendSync",topic="m_orders"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_broker_sends_total{backend="kafka",cluster="K_embedded",outcome="ok"}"#
        ),
        6.0,
        "5 sends + 1 fire"
    );
    assert_eq!(value(&page, "pproxy_rpc_batch_size_count"), 1.0);
    assert_eq!(
        value(
            &page,
            r#"pproxy_delay_adds_total{topic="m_delay",type="2"}"#
        ),
        2.0,
        "the one that fired and the one cancelled"
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_delay_cancels_total{topic="m_delay",result="cancelled"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &page,
            r#"pproxy_delay_fired_total{topic="m_delay",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&page, "pproxy_delay_fire_lateness_seconds_count"),
        1.0
    );
    assert_eq!(value(&page, "pproxy_delay_pending"), 0.0);
    assert!(value(&page, "pproxy_delay_commit_group_size_count") >= 2.0);
    assert!(value(&page, r#"pproxy_frames_total{protocol="compact"}"#) >= 7.0);
    assert_eq!(value(&page, "pproxy_connections"), 1.0);
}
