//! Rate limiting (forwarding.md §10) on a running pproxy, counted over a window with a stated
//! tolerance (not timed): topic limits, the warn portion, the delayed retry, 15 on refusal, and
//! live changes. embeddedKafka redirects the local config's cluster to the in-process cluster.

use std::time::{Duration, Instant};

use crate::common::*;
use pproxy::proto::Call;

fn doc(limiter: bool, topic_tps: i64) -> String {
    let extra = format!(r#""useRequestLimiter":{limiter},"maxTps":100000,"tpsWarningRatio":0.5,"#);
    local_config("127.0.0.1:1", &[("lim", "")], &extra).replace(
        r#""maxTps":100000}]"#,
        &format!(r#""maxTps":{topic_tps}}}]"#),
    )
}

/// Sends `total` requests to `lim` from 4 connections as fast as they are answered; returns
/// (admitted, refused, elapsed).
async fn hammer(p: &Proxy, total: usize) -> (u64, u64, Duration) {
    let started = Instant::now();
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
            for _ in 0..total / 4 {
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
    (total.0, total.1, started.elapsed())
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
        &[("local.json", doc(true, 4))],
    );
    // Topic limit 4/s split 2 normal + 2 warn, each with a one-second burst: whatever the speed
    // of the machine, at most 4 (bursts) + 4/s over the elapsed time are admitted (+25%, +2).
    let (ok, refused, elapsed) = hammer(&p, 100).await;
    let bound = 4.0 + 4.0 * elapsed.as_secs_f64() * 1.25 + 2.0;
    assert!(
        refused > 0,
        "the limit refused something (admitted {ok} in {elapsed:?})"
    );
    assert!(
        (ok as f64) <= bound,
        "admitted {ok} in {elapsed:?}: more than the 4/s limit allows ({bound:.0})"
    );
    assert!(ok >= 4, "the bursts were admitted: {ok}");
    let series =
        |r: &str| format!(r#"pproxy_rate_limit_total{{scope="topic",topic="lim",result="{r}"}}"#);
    assert!(
        metric(&p, &series("warn")) > 0,
        "warn portion used and counted"
    );
    assert!(
        metric(&p, &series("retried")) > 0,
        "refusals got their delayed retry"
    );
    assert!(
        metric(&p, &series("retry_refused")) > 0,
        "refused again after the retry: 15"
    );
    // Raise the limit live: many more admitted in the same window, nothing dropped.
    std::fs::write(p.dir.path().join("local.json"), doc(true, 100_000)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok2, refused2, _) = hammer(&p, 200).await;
    assert_eq!(
        (ok2, refused2),
        (200, 0),
        "no refusal under a 100000/s limit"
    );

    // Limiter off, then on again with a zero limit (a crash in DDMQ): everything refused with 15.
    std::fs::write(p.dir.path().join("local.json"), doc(false, 0)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hammer(&p, 40).await.1, 0, "limiter off");
    std::fs::write(p.dir.path().join("local.json"), doc(true, 0)).expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok3, refused3, _) = hammer(&p, 40).await;
    assert_eq!((ok3, refused3), (0, 40), "a zero limit refuses everything");
}
