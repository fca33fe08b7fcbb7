//! Forwarding to the real Apache RocketMQ name server and broker started by `scripts/stack.sh`:
//! a pull consumer reads back keys, tags, properties, body and queue id (forwarding.md §7).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::rmq::{self, Got};
use crate::common::*;
use pproxy::proto::{Call, Message};

fn proxy(ns: &str, topics: &[(&str, &str)], extra: &str) -> Proxy {
    let doc = rmq::local_config(ns, topics, extra);
    Proxy::start_with_files(
        "localConfig: local.json\nlogging:\n  level: info,pproxy::writer=debug\n",
        &[("local.json", doc)],
    )
}

fn by_body(got: &[Got]) -> BTreeMap<Vec<u8>, Got> {
    got.iter().map(|g| (g.body.clone(), g.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_hash_and_random_messages_land_with_their_fields() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rfields");
    rmq::create_topic(&topic, 4);
    let p = proxy(&ns, &[(&topic, "")], "");
    let mut c = p.client().await;

    let explicit = Message {
        key: Some("k-explicit".into()),
        tags: Some("tagA".into()),
        partition_id: 6, // 6 mod 4 -> queue 2
        properties: vec![
            ("traceId".into(), "abc".into()),
            ("carrera_headers".into(), "h=1".into()),
        ],
        ..msg(&topic, b"explicit")
    };
    let hash = Message {
        key: Some("k-hash".into()),
        partition_id: -1,
        hash_id: -7, // |-7| mod 4 -> 3
        ..msg(&topic, b"hash")
    };
    let no_key = Message {
        key: Some(String::new()),
        tags: Some(String::new()),
        partition_id: 1,
        ..msg(&topic, b"nokey")
    };
    for m in [explicit, hash, no_key] {
        let (code, text, _) = call(&mut c, &Call::SendSync(Some(m), 5000)).await;
        assert_eq!((code, text.as_str()), (0, "OK"));
    }
    for i in 0..40 {
        let m = Message {
            partition_id: -2,
            ..msg(&topic, format!("random-{i}").as_bytes())
        };
        assert_eq!(call(&mut c, &Call::SendSync(Some(m), 5000)).await.0, 0);
    }
    // A body at the compression threshold is stored compressed and read back intact.
    let big: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
    let m = Message {
        partition_id: 0,
        ..msg(&topic, &big)
    };
    assert_eq!(call(&mut c, &Call::SendSync(Some(m), 5000)).await.0, 0);

    let got = rmq::consume(&ns, &topic, 44, Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        44,
        "every acknowledged message is in the broker, once"
    );
    let b = by_body(&got);
    let e = &b[b"explicit".as_slice()];
    assert_eq!(e.queue_id, 2);
    assert_eq!(e.prop("KEYS"), Some("k-explicit"));
    assert_eq!(e.prop("TAGS"), Some("tagA"));
    assert_eq!(e.prop("traceId"), Some("abc"));
    assert_eq!(e.prop("carrera_headers"), Some("h=1"));
    let uniq = e.prop("UNIQ_KEY").expect("UNIQ_KEY");
    assert_eq!(uniq.len(), 32, "UNIQ_KEY is 32 hex characters: {uniq}");
    assert!(uniq
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    let h = &b[b"hash".as_slice()];
    assert_eq!((h.queue_id, h.prop("KEYS")), (3, Some("k-hash")));
    assert_eq!(h.prop("TAGS"), None);
    let n = &b[b"nokey".as_slice()];
    assert_eq!(
        (n.queue_id, n.prop("KEYS"), n.prop("TAGS")),
        (1, None, None)
    );
    let big_got = &b[big.as_slice()];
    assert_eq!(big_got.queue_id, 0);
    assert_eq!(
        big_got.sys_flag & 1,
        1,
        "compressed flag set at the threshold"
    );
    let small_flag = e.sys_flag & 1;
    assert_eq!(small_flag, 0, "small bodies are not compressed");
    let random_queues: BTreeSet<i32> = got
        .iter()
        .filter(|g| g.body.starts_with(b"random-"))
        .map(|g| g.queue_id)
        .collect();
    assert!(
        random_queues.len() >= 3,
        "40 random messages spread over the queues: {random_queues:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_order_per_queue_and_pack_with_auto_batch() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rbatch");
    rmq::create_topic(&topic, 2);
    let p = proxy(
        &ns,
        &[(&topic, ",\"autoBatch\":true")],
        "\"useAutoBatch\":true,\"autoBatch\":{\"maxBatchMessagesNumber\":4},",
    );
    let mut c = p.client().await;
    // 10 hash messages to queue 1 and 5 explicit to queue 0, interleaved, plus 3 random.
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(Message {
            key: Some(format!("h{i}")),
            partition_id: -1,
            hash_id: 1,
            properties: vec![("seq".into(), i.to_string())],
            ..msg(&topic, format!("h-{i}").as_bytes())
        });
        if i % 2 == 0 {
            batch.push(Message {
                tags: Some("even".into()),
                partition_id: 0,
                ..msg(&topic, format!("e-{i}").as_bytes())
            });
        }
    }
    for i in 0..3 {
        batch.push(Message {
            partition_id: -5,
            ..msg(&topic, format!("r-{i}").as_bytes())
        });
    }
    let (code, text, _) = call(&mut c, &Call::SendBatchSync(batch)).await;
    assert_eq!((code, text.as_str()), (0, "OK"));

    let got = rmq::consume(&ns, &topic, 18, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 18);
    let q1: Vec<String> = got
        .iter()
        .filter(|g| g.body.starts_with(b"h-"))
        .map(|g| {
            assert_eq!(g.queue_id, 1, "hashId 1 mod 2");
            String::from_utf8_lossy(&g.body).into_owned()
        })
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("h-{i}")).collect();
    assert_eq!(q1, want, "batch order kept inside the chain");
    for g in got.iter().filter(|g| g.body.starts_with(b"h-")) {
        let i = String::from_utf8_lossy(&g.body[2..]).into_owned();
        assert_eq!(g.prop("seq"), Some(i.as_str()));
        assert_eq!(g.prop("KEYS"), Some(format!("h{i}").as_str()));
    }
    let q0: Vec<&Got> = got.iter().filter(|g| g.body.starts_with(b"e-")).collect();
    assert_eq!(q0.len(), 5);
    assert!(q0
        .iter()
        .all(|g| g.queue_id == 0 && g.prop("TAGS") == Some("even")));
    let random: BTreeSet<i32> = got
        .iter()
        .filter(|g| g.body.starts_with(b"r-"))
        .map(|g| g.queue_id)
        .collect();
    assert_eq!(random.len(), 1, "a batch's random messages share one queue");
}

/// 16 synchronous clients send 25 messages each to one queue of `topic`: the lane packs them
/// into batch requests, every message arrives once, and each client's order holds.
async fn sixteen_clients_share_lane_requests(ns: &str, topic: &str, p: &Proxy) {
    let mut tasks = Vec::new();
    for client in 0..16 {
        let mut c = p.client().await;
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let m = Message {
                    key: Some(format!("c{client}-{i}")),
                    partition_id: 0,
                    ..msg(&topic, format!("c{client}-{i}").as_bytes())
                };
                let (code, _, _) = call(&mut c, &Call::SendSync(Some(m), 5000)).await;
                assert_eq!(code, 0);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let w = lane_figures(p);
    let requests = w["laneRequests"].as_u64().expect("laneRequests");
    let batched = w["laneBatchedMessages"]
        .as_u64()
        .expect("laneBatchedMessages");
    assert!(
        w["laneBatchRequests"].as_u64() > Some(0) && requests < 400,
        "16 clients on one queue pack into batch requests: {w}"
    );
    assert_eq!(
        requests - w["laneBatchRequests"].as_u64().unwrap_or(0) + batched,
        400,
        "every message left in exactly one lane request: {w}"
    );
    let got = rmq::consume(ns, topic, 400, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 400, "every acknowledged message arrived once");
    let mut per_client: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for g in &got {
        let body = String::from_utf8_lossy(&g.body).into_owned();
        assert_eq!(g.prop("KEYS"), Some(body.as_str()));
        let (c, i) = body.split_once('-').expect("body format");
        per_client
            .entry(c.to_string())
            .or_default()
            .push(i.parse().expect("index"));
    }
    for (c, seq) in per_client {
        let want: Vec<u32> = (0..25).collect();
        assert_eq!(
            seq, want,
            "one synchronous client's messages stay in order ({c})"
        );
    }
}

/// The lane figures of cluster `R_test` in `/status`.
fn lane_figures(p: &Proxy) -> serde_json::Value {
    let (status, body) = p.http_get("/status").expect("status");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
    v["clusters"]["R_test"]["writer"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_small_messages_share_lane_requests_and_all_arrive() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rlane");
    rmq::create_topic(&topic, 1);
    let p = proxy(
        &ns,
        &[(&topic, ",\"autoBatch\":true")],
        "\"useAutoBatch\":true,",
    );
    sixteen_clients_share_lane_requests(&ns, &topic, &p).await;
}

/// Issue 16: a topic without auto-batch coalesces too while its lane is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_topic_coalesces_while_its_lane_is_busy() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rcoal");
    rmq::create_topic(&topic, 1);
    let p = proxy(&ns, &[(&topic, "")], "");
    sixteen_clients_share_lane_requests(&ns, &topic, &p).await;
}

/// A lone synchronous client always finds its lane idle: every message is its own request,
/// sent at once (no batch window), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_client_never_waits_for_a_batch() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rlone");
    rmq::create_topic(&topic, 1);
    let p = proxy(&ns, &[(&topic, "")], "");
    let mut c = p.client().await;
    for i in 0..30 {
        let m = Message {
            partition_id: 0,
            ..msg(&topic, format!("lone-{i:02}").as_bytes())
        };
        let (code, _, _) = call(&mut c, &Call::SendSync(Some(m), 5000)).await;
        assert_eq!(code, 0);
    }
    let w = lane_figures(&p);
    assert_eq!(w["laneRequests"].as_u64(), Some(30), "{w}");
    assert_eq!(w["laneBatchRequests"].as_u64(), Some(0), "{w}");
    let got = rmq::consume(&ns, &topic, 30, Duration::from_secs(30)).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
        .collect();
    let want: Vec<String> = (0..30).map(|i| format!("lone-{i:02}")).collect();
    assert_eq!(bodies, want, "all arrived once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_without_a_route_answers_14_and_is_not_created() {
    let _stack = STACK.read().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    let topic = unique_topic("rnoroute");
    let p = proxy(&ns, &[(&topic, "")], "");
    let mut c = p.client().await;
    let (code, _, _) = call(&mut c, &Call::SendSync(Some(msg(&topic, b"x")), 5000)).await;
    assert_eq!(
        code,
        14,
        "no route: 14, never auto-created through TBW102\n{}",
        p.log()
    );
    // The connection survives and the topic still has no route afterwards.
    let (code, _, _) = call(&mut c, &Call::SendSync(Some(msg(&topic, b"y")), 5000)).await;
    assert_eq!(code, 14);
    let got = rmq::consume_checked(&ns, &topic).await;
    assert!(got.is_err(), "the topic was not created: {got:?}");
}
