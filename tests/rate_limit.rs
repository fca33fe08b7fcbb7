//! Rate limiting (forwarding.md §10) on a running pproxy, counted over a window with a stated
//! tolerance (not timed): topic limits, the warn portion, the delayed retry, 15 on refusal, and
//! live changes. embeddedKafka redirects the local config's cluster to the in-process cluster.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pproxy::proto::Call;

fn doc(limiter: bool, topic_tps: i64) -> String {
    let extra = format!(r#""useRequestLimiter":{limiter},"maxTps":100000,"tpsWarningRatio":0.5,"#);
    local_config("127.0.0.1:1", &[("lim", "")], &extra).replace(
        r#""maxTps":100000}]"#,
        &format!(r#""maxTps":{topic_tps}}}]"#),
    )
}

/// Hammers `lim` from 4 connections for `window`; returns (admitted, refused).
async fn hammer(p: &Proxy, window: Duration) -> (u64, u64) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = p.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = pproxy::client::Client::connect(
                &addr,
                pproxy::proto::Protocol::Compact,
                Duration::from_secs(5),
            )
            .await
            .expect("connect");
            let (mut ok, mut refused) = (0, 0);
            let end = Instant::now() + window;
            while Instant::now() < end {
                match call(&mut c, &Call::SendSync(Some(msg("lim", b"x")), 3000))
                    .await
                    .0
                {
                    0 => ok += 1,
                    15 => refused += 1,
                    other => panic!("unexpected code {other}"),
                }
            }
            (ok, refused)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (o, r) = t.await.expect("task");
        total.0 += o;
        total.1 += r;
    }
    total
}

fn metric(p: &Proxy, series: &str) -> u64 {
    let (_, page) = p.http_get("/metrics").expect("metrics");
    page.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_limit_counts_warn_retry_and_live_changes() {
    let p = Proxy::start_with_files(
        "embeddedKafka: true\nlocalConfig: local.json\n",
        &[("local.json", doc(true, 40))],
    );
    // Topic limit 40/s split 20 normal + 20 warn, each with a one-second burst: over a 2 s
    // window at most 40 (bursts) + 2 × 40 (refill) are admitted; the tolerance is 25%.
    let (ok, refused) = hammer(&p, Duration::from_secs(2)).await;
    assert!(refused > 0, "the limit refused something");
    assert!(
        (40..=150).contains(&ok),
        "admitted {ok} over 2 s with a 40/s limit (refused {refused})"
    );
    assert!(
        metric(
            &p,
            r#"pproxy_rate_limit_total{scope="topic",topic="lim",result="warn"}"#
        ) > 0,
        "warn portion used"
    );
    assert!(
        metric(
            &p,
            r#"pproxy_rate_limit_total{scope="topic",topic="lim",result="retried"}"#
        ) > 0,
        "delayed retries"
    );
    assert!(
        metric(
            &p,
            r#"pproxy_rate_limit_total{scope="topic",topic="lim",result="retry_refused"}"#
        ) > 0
    );

    // Raise the limit live: many more admitted in the same window, nothing dropped.
    std::fs::write(p.dir.path().join("local.json"), doc(true, 100_000)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok2, refused2) = hammer(&p, Duration::from_secs(1)).await;
    assert_eq!(refused2, 0, "no refusal under a 100000/s limit");
    assert!(ok2 > 150, "admitted {ok2} after the limit was raised");

    // Limiter off, then on again with a zero limit (a crash in DDMQ): everything refused with 15.
    std::fs::write(p.dir.path().join("local.json"), doc(false, 0)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hammer(&p, Duration::from_millis(300)).await.1,
        0,
        "limiter off"
    );
    std::fs::write(p.dir.path().join("local.json"), doc(true, 0)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok3, refused3) = hammer(&p, Duration::from_millis(300)).await;
    assert_eq!(ok3, 0, "a zero limit refuses everything");
    assert!(refused3 > 0);
}
