//! Delay messages fired into the real Kafka: right topic, key (occurrence id), body, headers,
//! never before their due time, loops the right number of times, cancelled ones never.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use pproxy::proto::{Call, DelayMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_messages_fire_on_time_once_and_cancel_holds() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("delay");
    create_topic(&kafka, &topic, 3).await;
    let doc = local_config(&kafka, &[(&topic, r#","delayTopic":true"#)], "");
    let proxy = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let mut c = proxy.client().await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let add = |f: &dyn Fn(&mut DelayMessage)| {
        let mut d = DelayMessage {
            topic: Some(topic.clone()),
            body: Some(Bytes::from_static(&[0xff, 0x00, 0x80])),
            tags: Some("tagA".into()),
            action: 1,
            timestamp: now_ms + 1500,
            dmsgtype: 2,
            properties: vec![
                ("traceId".into(), "t-1".into()),
                ("from_chronos".into(), "client".into()),
            ],
            ..Default::default()
        };
        f(&mut d);
        Call::SendDelaySync(Some(d), 3000)
    };
    let (code, _, once_id) = call(
        &mut c,
        &add(&|d| d.uuid = Some("a0000000-0000-0000-0000-000000000001".into())),
    )
    .await;
    assert_eq!(code, 0);
    let once_id = once_id.expect("id");
    let (code, _, cancel_id) = call(
        &mut c,
        &add(&|d| d.uuid = Some("a0000000-0000-0000-0000-000000000002".into())),
    )
    .await;
    assert_eq!(code, 0);
    let cancel_id = cancel_id.expect("id");
    assert_eq!(call(&mut c, &delay_cancel(&topic, &cancel_id)).await.0, 0);
    // Fixed loop: 3 fires, 3 s apart; exponential loop base 2: gaps 2 s then 4 s.
    let loop_ts = now_ms + 1000;
    let (code, _, fixed_id) = call(
        &mut c,
        &add(&|d| {
            d.dmsgtype = 3;
            d.timestamp = loop_ts;
            d.interval = 3;
            d.times = 3;
            d.expire = loop_ts + 60_000;
            d.uuid = Some("a0000000-0000-0000-0000-000000000003".into());
        }),
    )
    .await;
    assert_eq!(code, 0);
    let (code, _, exp_id) = call(
        &mut c,
        &add(&|d| {
            d.dmsgtype = 4;
            d.timestamp = loop_ts;
            d.interval = 2;
            d.times = 5;
            d.expire = loop_ts + 6_000; // occurrences at +0, +2 s, +6 s; +14 s is past expire
            d.uuid = Some("a0000000-0000-0000-0000-000000000004".into());
        }),
    )
    .await;
    assert_eq!(code, 0);

    let got = consume(&kafka, &topic, 7, Duration::from_secs(20));
    let keys: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or(b"")).into_owned())
        .collect();
    assert_eq!(
        got.len(),
        7,
        "1 one-shot + 3 fixed + 3 exponential: {keys:?}"
    );

    let once = got
        .iter()
        .find(|r| r.key.as_deref() == Some(once_id.as_bytes()))
        .expect("one-shot fired");
    assert_eq!(once.value, vec![0xff, 0x00, 0x80], "body bytes unchanged");
    assert_eq!(header(once, "TAGS"), Some(&b"tagA"[..]));
    assert_eq!(header(once, "traceId"), Some(&b"t-1"[..]));
    assert_eq!(
        header(once, "from_chronos"),
        Some(&b"from_chronos"[..]),
        "marker overwrites the client's"
    );
    assert!(
        once.timestamp_ms >= now_ms + 1500,
        "fired {} ms early",
        now_ms + 1500 - once.timestamp_ms
    );
    assert!(!keys.contains(&cancel_id), "cancelled message fired");

    let fixed_id = scheduler::DelayId::parse(&fixed_id.expect("id")).expect("parse");
    for k in 0..3i64 {
        let mut occ = fixed_id.clone();
        occ.timestamp = loop_ts + 3000 * k;
        occ.timed = k;
        let r = got
            .iter()
            .find(|r| r.key.as_deref() == Some(occ.to_string().as_bytes()))
            .unwrap_or_else(|| panic!("fixed occurrence {k} missing: {keys:?}"));
        assert!(r.timestamp_ms >= occ.timestamp, "occurrence {k} early");
    }
    let exp_id = scheduler::DelayId::parse(&exp_id.expect("id")).expect("parse");
    for (k, off) in [(0i64, 0i64), (1, 2000), (2, 6000)] {
        let mut occ = exp_id.clone();
        occ.timestamp = loop_ts + off;
        occ.timed = k;
        let r = got
            .iter()
            .find(|r| r.key.as_deref() == Some(occ.to_string().as_bytes()))
            .unwrap_or_else(|| panic!("exponential occurrence {k} missing: {keys:?}"));
        assert!(r.timestamp_ms >= occ.timestamp, "occurrence {k} early");
    }
    for (id, want) in [
        (&once_id, "fired"),
        (&cancel_id, "cancelled"),
        (&fixed_id.to_string(), "completed"),
    ] {
        let (_, body) = proxy.http_get(&format!("/delay/{id}")).expect("status");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["state"], want, "{id}: {v}");
    }
}
