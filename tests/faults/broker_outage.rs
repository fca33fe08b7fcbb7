//! Broker outages under load (issue #7 part 3): the real Kafka, and the real RocketMQ broker, are
//! stopped for 30 s while clients send, then started again. Every request is answered (0, 10 or
//! 12, never a hang), every request answered 0 is in the broker afterwards, and service returns
//! once the broker is back. The figures are printed (`--nocapture`) for docs/RELIABILITY.md.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::rmq;
use crate::common::*;
use pproxy::proto::Call;

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// Client timeout of every sendSync.
const TIMEOUT_MS: i64 = 3000;
/// Concurrent clients.
const CLIENTS: usize = 8;

/// One answered request.
struct Answer {
    body: String,
    code: i32,
    sent: Instant,
    took: Duration,
}

fn stack(args: &[&str]) {
    let st = std::process::Command::new(repo_path("scripts/stack.sh"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run stack.sh");
    assert!(st.success(), "stack.sh {args:?}");
}

/// Runs `CLIENTS` senders against `topic` while `outage` stops and restarts the broker; returns
/// every answer and the instant the broker was healthy again.
async fn under_load(
    p: &Proxy,
    topic: &str,
    down: &'static [&'static str],
    up: &'static [&'static str],
) -> (Vec<Answer>, Instant, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = p.client().await;
        let (stop, answers, topic) = (stop.clone(), answers.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("c{c}-{i}");
                i += 1;
                let m = pproxy::proto::Message {
                    partition_id: -1,
                    hash_id: c as i64,
                    ..msg(&topic, body.as_bytes())
                };
                let sent = Instant::now();
                let (code, _, _) = call(&mut client, &Call::SendSync(Some(m), TIMEOUT_MS)).await;
                let took = sent.elapsed();
                answers.lock().unwrap().push(Answer {
                    body,
                    code,
                    sent,
                    took,
                });
                if code != 0 {
                    // Failing fast must not turn into a busy loop against a dead broker.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = Instant::now();
    tokio::task::spawn_blocking(move || stack(down))
        .await
        .expect("stop");
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    tokio::task::spawn_blocking(move || stack(up))
        .await
        .expect("start");
    let healthy = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let v = std::mem::take(&mut *answers.lock().unwrap());
    (v, stopped, healthy)
}

/// `a - b` in seconds, negative when `a` is earlier.
fn signed_secs(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64()
    } else {
        -b.duration_since(a).as_secs_f64()
    }
}

/// Prints the causes named by the (sampled) failure lines of the proxy's log, with counts:
/// what a failed run needs to be understood.
fn print_causes(name: &str, log: &str) {
    let mut causes = std::collections::BTreeMap::new();
    for l in log.lines().filter(|l| l.contains("request failed")) {
        let code = l.split(" code=").nth(1).and_then(|r| r.split(' ').next());
        let cause = l.split(" cause=").nth(1).unwrap_or("-");
        *causes
            .entry(format!("{} {cause}", code.unwrap_or("?")))
            .or_insert(0u64) += 1;
    }
    println!("{name}: sampled failure lines by code and cause: {causes:#?}");
}

/// Checks the answers and prints the figures; returns the bodies answered 0.
fn check(name: &str, answers: &[Answer], stopped: Instant, healthy: Instant) -> HashSet<String> {
    let slack = Duration::from_millis(TIMEOUT_MS as u64 + 500);
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    assert!(
        slowest <= slack,
        "{name}: an answer took {slowest:?} (hang)"
    );
    let mut counts = std::collections::BTreeMap::new();
    for a in answers {
        *counts.entry(a.code).or_insert(0u64) += 1;
    }
    for code in counts.keys() {
        assert!(
            [0, 10, 12].contains(code),
            "{name}: code {code} outside 0/10/12: {counts:?}"
        );
    }
    let during_failures = answers
        .iter()
        .filter(|a| a.sent > stopped && a.sent < healthy && a.code != 0)
        .count();
    assert!(
        during_failures > 0,
        "{name}: the outage was visible to clients"
    );
    // Recovery: from the broker being healthy to the first of a run of 20 successes.
    let mut after: Vec<&Answer> = answers.iter().filter(|a| a.sent >= healthy).collect();
    after.sort_by_key(|a| a.sent);
    let mut run = 0;
    let mut recovered = None;
    for a in &after {
        if a.code == 0 {
            run += 1;
            if run == 1 {
                recovered = Some(a.sent + a.took);
            }
            if run == 20 {
                break;
            }
        } else {
            run = 0;
            recovered = None;
        }
    }
    let recovered = recovered.filter(|_| run >= 20).unwrap_or_else(|| {
        panic!("{name}: no steady service after the broker returned: {counts:?}")
    });
    println!(
        "{name}: {} requests, codes {counts:?}, slowest answer {slowest:?}, \
         service back {:.2} s after the broker was healthy",
        answers.len(),
        recovered.saturating_duration_since(healthy).as_secs_f64()
    );
    answers
        .iter()
        .filter(|a| a.code == 0)
        .map(|a| a.body.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_under_load() {
    // Stops a broker: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("outage");
    create_topic(&kafka, &topic, 2).await;
    let doc = local_config(&kafka, &[(&topic, "")], "");
    let p = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let (answers, stopped, healthy) =
        under_load(&p, &topic, &["down", "kafka"], &["up", "kafka"]).await;
    let acked = check("kafka", &answers, stopped, healthy);
    let got = consume(&kafka, &topic, acked.len(), Duration::from_secs(60));
    let stored: HashSet<String> = got
        .iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "kafka: acknowledged but not stored: {lost:?}"
    );
    println!(
        "kafka: {} acknowledged, all {} found by a consumer ({} stored in all, 12 may be stored)",
        acked.len(),
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_broker_outage_under_load() {
    // Stops a broker: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("routage");
    rmq::create_topic(&topic, 2);
    let doc = rmq::local_config(&ns, &[(&topic, "")], "");
    let p = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let (answers, stopped, healthy) = under_load(
        &p,
        &topic,
        &["down", "rocketmq-broker"],
        &["up", "rocketmq"],
    )
    .await;
    print_causes("rocketmq", &p.log());
    let acked = check("rocketmq", &answers, stopped, healthy);
    let got = rmq::consume(&ns, &topic, acked.len(), Duration::from_secs(60)).await;
    let stored: HashSet<String> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    if !lost.is_empty() {
        // Seen once in CI (1 of 28 323 acks, sent in the last second of the load), when the
        // reader stopped at as many messages as were acknowledged, the newest of a queue unread
        // (issue 20 part 5; it now reads every queue to its end): tell a message the broker
        // does not hold from one the first consumer missed.
        let again = rmq::consume(&ns, &topic, acked.len(), Duration::from_secs(10)).await;
        let again: HashSet<String> = again
            .iter()
            .map(|g| String::from_utf8_lossy(&g.body).into_owned())
            .collect();
        let detail: Vec<String> = lost
            .iter()
            .map(|body| {
                let a = answers.iter().find(|a| &&a.body == body);
                let when = a.map_or(String::new(), |a| {
                    format!(
                        "sent {:+.3} s from the stop, {:+.3} s from healthy, answered in {:?}",
                        signed_secs(a.sent, stopped),
                        signed_secs(a.sent, healthy),
                        a.took
                    )
                });
                format!(
                    "{body}: {when}; a second consumer {} it",
                    if again.contains(*body) {
                        "found"
                    } else {
                        "did not find"
                    }
                )
            })
            .collect();
        panic!("rocketmq: acknowledged but not stored: {detail:#?}");
    }
    println!(
        "rocketmq: {} acknowledged, all found by a consumer ({} stored in all)",
        acked.len(),
        stored.len()
    );
    // The outage's fast failures were retried, and the metric says so (issue 18).
    let (_, page) = p.http_get("/metrics").expect("scrape");
    let retries: f64 = page
        .lines()
        .filter(|l| {
            l.starts_with(r#"pproxy_broker_retries_total{backend="rocketmq",cluster="R_test""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        retries > 0.0,
        "no retries counted during the outage:\n{page}"
    );
}

/// One `sendSync` of body `s<i>` with a 1 s timeout: its code.
async fn send_numbered(client: &mut pproxy::client::Client, topic: &str, i: usize) -> i32 {
    let m = msg(topic, format!("s{i}").as_bytes());
    call(client, &Call::SendSync(Some(m), 1000)).await.0
}

/// Issue 20 part 5, seen in CI at 3e0c33b: the restarted broker was registered and answering,
/// yet no send succeeded in the 15 s the outage test watched, every one answered 10 with
/// "transport.connection.failed". rocketmq-client-rust refuses every connection to a broker
/// address for 30 s after five failed connects (its circuit breaker), and for 30 s more after
/// each failed probe; the outage test hits that only when its sends fail to connect while the
/// name server still routes to the stopped broker, a race with the broker's unregistration.
/// This test makes that state for real: the broker is stopped while the name server keeps a
/// route to it (a registration held by `probe.py rocketmq-stale-route`, the route a name
/// server serves after a broker vanished without unregistering), sends fail to connect until
/// the library's breaker opens, then the broker starts again. Sends must resume within a few
/// seconds of the broker being healthy (without pproxy's recovery they resumed 30 s after
/// the breaker opened), and pproxy must have replaced the refusing producer instance.
#[tokio::test(flavor = "multi_thread")]
async fn rocketmq_sends_resume_when_the_broker_returns_behind_a_stale_route() {
    let _stack = STACK.write().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("stale");
    rmq::create_topic(&topic, 2);
    let doc = rmq::local_config(&ns, &[(&topic, "")], "");
    let p = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let mut client = p.client().await;
    assert_eq!(
        send_numbered(&mut client, &topic, 0).await,
        0,
        "sends work before the outage"
    );

    tokio::task::spawn_blocking(|| stack(&["down", "rocketmq-broker"]))
        .await
        .expect("stop");
    let (cluster, broker, addr) = rmq::BROKER;
    let mut hold = std::process::Command::new("python3")
        .arg(repo_path("scripts/stack/probe.py"))
        .args([
            "rocketmq-stale-route",
            &ns,
            cluster,
            broker,
            addr,
            &topic,
            "2",
            "300",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start probe.py rocketmq-stale-route");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hold.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read probe.py");
    assert!(
        line.contains("registered"),
        "stale route not held: {line:?}"
    );

    // Sends to the routed, stopped broker fail to connect until the library's breaker opens.
    let until = Instant::now() + Duration::from_secs(20);
    let mut i = 1;
    while !p.log().contains("Circuit breaker OPEN") {
        assert!(
            Instant::now() < until,
            "the client library's circuit breaker never opened"
        );
        assert_ne!(
            send_numbered(&mut client, &topic, i).await,
            0,
            "a send to a stopped broker"
        );
        i += 1;
    }

    tokio::task::spawn_blocking(|| stack(&["up", "rocketmq"]))
        .await
        .expect("start");
    let healthy = Instant::now();
    // The real broker's registration has replaced the held one: closing it removes nothing.
    let _ = hold.kill();
    let _ = hold.wait();

    // From the broker being healthy to the first of 20 successes in a row.
    let watch = Instant::now() + Duration::from_secs(40);
    let (mut run, mut first_ok) = (0, None);
    let mut codes = std::collections::BTreeMap::new();
    while run < 20 && Instant::now() < watch {
        let code = send_numbered(&mut client, &topic, i).await;
        i += 1;
        *codes.entry(code).or_insert(0u32) += 1;
        if code == 0 {
            run += 1;
            first_ok.get_or_insert(Instant::now());
        } else {
            (run, first_ok) = (0, None);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let back = first_ok
        .filter(|_| run >= 20)
        .map(|t| signed_secs(t, healthy));
    let (_, status) = p.http_get("/status").expect("status");
    println!(
        "rocketmq: stale route: service back {back:?} s after the broker was healthy; codes \
         {codes:?}; {status}"
    );
    let back = back.unwrap_or_else(|| {
        panic!("rocketmq: no steady service 40 s after the broker returned: {codes:?}")
    });
    // The library alone resumes 30 s after its breaker opened, 25 s or more after healthy
    // unless the broker took that long to start; pproxy probes every second.
    assert!(
        back <= 5.0,
        "rocketmq: service back only {back:.1} s after the broker was healthy: {codes:?}"
    );
    assert!(
        !status.contains("\"producerReplacements\":0"),
        "no producer instance was replaced: {status}"
    );
}
