//! Forwarding to the real Apache Kafka started by `scripts/stack.sh`: every Message field lands
//! where forwarding.md §6 says, batch order per partition, sendAsync, and the result codes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use pproxy::proto::{Call, Message};

fn local_proxy(bootstrap: &str, topics: &[(&str, &str)]) -> Proxy {
    let doc = local_config(bootstrap, topics, "");
    Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_lands_where_the_spec_says() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("fields");
    create_topic(&kafka, &topic, 4).await;
    let proxy = local_proxy(&kafka, &[(&topic, "")]);
    let mut c = proxy.client().await;

    let explicit = Message {
        key: Some("k-explicit".into()),
        tags: Some("t1||t2".into()),
        partition_id: 6, // reduced modulo 4 -> 2
        properties: vec![("traceId".into(), "abc".into()), ("x".into(), "y".into())],
        ..msg(&topic, &[0, 255, 1, 0])
    };
    let negative_hash = Message {
        key: Some("k-neg".into()),
        partition_id: -1,
        hash_id: -7, // |-7| mod 4 -> 3
        ..msg(&topic, b"neg")
    };
    let hash = Message {
        key: Some("k-hash".into()),
        partition_id: -1,
        hash_id: 10, // -> 2
        ..msg(&topic, b"hash")
    };
    let no_key = Message {
        partition_id: 1,
        ..msg(&topic, b"nokey")
    };
    let empty_key = Message {
        key: Some(String::new()),
        partition_id: 1,
        ..msg(&topic, b"emptykey")
    };
    let value_only = Message {
        topic: Some(topic.clone()),
        key: Some("k-value".into()),
        value: Some(Bytes::from_static(b"php-style")),
        partition_id: 0,
        ..Default::default()
    };
    let body_wins = Message {
        key: Some("k-bodywins".into()),
        value: Some(Bytes::from_static(b"ignored")),
        partition_id: 0,
        ..msg(&topic, b"body")
    };
    for m in [
        explicit,
        negative_hash,
        hash,
        no_key,
        empty_key,
        value_only,
        body_wins,
    ] {
        let (code, text, _) = call(&mut c, &Call::SendSync(Some(m), 5000)).await;
        assert_eq!((code, text.as_str()), (0, "OK"));
    }
    for i in 0..40 {
        let m = Message {
            key: Some(format!("rand-{i}")),
            partition_id: -2,
            ..msg(&topic, b"r")
        };
        assert_eq!(call(&mut c, &Call::SendSync(Some(m), 5000)).await.0, 0);
    }

    let got = consume(&kafka, &topic, 47, Duration::from_secs(30));
    assert_eq!(got.len(), 47, "exactly the sent records: {got:?}");
    let by_key = |k: &str| {
        got.iter()
            .find(|c| c.key.as_deref() == Some(k.as_bytes()))
            .unwrap_or_else(|| panic!("record {k} missing"))
    };
    let e = by_key("k-explicit");
    assert_eq!(e.partition, 2);
    assert_eq!(e.value, vec![0, 255, 1, 0], "binary body unchanged");
    assert_eq!(header(e, "TAGS"), Some(&b"t1||t2"[..]));
    assert_eq!(header(e, "traceId"), Some(&b"abc"[..]));
    assert_eq!(header(e, "x"), Some(&b"y"[..]));
    assert_eq!(e.headers.len(), 3);
    assert_eq!(by_key("k-neg").partition, 3);
    assert_eq!(by_key("k-hash").partition, 2);
    assert!(
        by_key("k-hash").headers.is_empty(),
        "no TAGS header without tags"
    );
    let nk = got.iter().find(|c| c.value == b"nokey").expect("nokey");
    assert_eq!(
        (nk.key.clone(), nk.partition),
        (None, 1),
        "absent key -> null key"
    );
    let ek = got
        .iter()
        .find(|c| c.value == b"emptykey")
        .expect("emptykey");
    assert_eq!(ek.key, Some(Vec::new()), "\"\" -> empty key");
    assert_eq!(by_key("k-value").value, b"php-style");
    assert_eq!(by_key("k-bodywins").value, b"body");
    let random_parts: std::collections::BTreeSet<i32> = got
        .iter()
        .filter(|c| c.key.as_deref().is_some_and(|k| k.starts_with(b"rand-")))
        .map(|c| c.partition)
        .collect();
    assert!(
        random_parts.len() >= 2,
        "random partition spreads: {random_parts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_keeps_order_per_partition_and_async_arrives() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("batch");
    create_topic(&kafka, &topic, 3).await;
    let proxy = local_proxy(&kafka, &[(&topic, "")]);
    let mut c = proxy.client().await;

    let batch: Vec<Message> = (0..150)
        .map(|i| Message {
            key: Some(format!("b-{i}")),
            partition_id: -1,
            hash_id: i % 3,
            ..msg(&topic, format!("{i}").as_bytes())
        })
        .collect();
    let (code, _, _) = call(&mut c, &Call::SendBatchSync(batch)).await;
    assert_eq!(code, 0);
    let (code, _, _) = call(&mut c, &Call::SendBatchSync(vec![])).await;
    assert_eq!(code, 0, "empty batch is OK");
    let async_msg = Message {
        key: Some("async-1".into()),
        partition_id: 0,
        ..msg(&topic, b"async")
    };
    assert_eq!(call(&mut c, &Call::SendAsync(Some(async_msg))).await.0, 0);

    let got = consume(&kafka, &topic, 151, Duration::from_secs(30));
    assert_eq!(got.len(), 151);
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in got.iter().filter(|r| r.value != b"async") {
        let seq: i64 = String::from_utf8_lossy(&r.value).parse().expect("seq body");
        assert_eq!(r.partition as i64, seq % 3, "hashId picks the partition");
        per_partition.entry(r.partition).or_default().push(seq);
    }
    for (p, seqs) in per_partition {
        assert_eq!(seqs.len(), 50, "partition {p}");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "batch order kept in partition {p}: {seqs:?}"
        );
    }
    let a = got
        .iter()
        .find(|r| r.value == b"async")
        .expect("async message stored");
    assert_eq!(a.partition, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_codes_the_front_end_produces() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("codes");
    let delay_topic = unique_topic("codes-delay");
    create_topic(&kafka, &topic, 2).await;
    create_topic(&kafka, &delay_topic, 2).await;
    let missing = unique_topic("never-created");
    let doc = format!(
        r#"{{"proxyCluster":"P","brokerClusters":["K_test","R_test","N_test"],
          "carreraConfiguration":{{"useKafka":true,"useRocketmq":true,
            "kafkaConfigurationMap":{{"K_test":{{"bootstrapServers":["{kafka}"]}}}},
            "rocketmqConfigurationMap":{{"R_test":{{"namesrvAddrs":["127.0.0.1:9876"]}}}},
            "defaultTopicInfoConf":{{"topics":[
              {{"topic":"{topic}","topicUnits":[{{"brokerCluster":"K_test"}}]}},
              {{"topic":"{delay_topic}","delayTopic":true,"topicUnits":[{{"brokerCluster":"K_test"}}]}},
              {{"topic":"{missing}","topicUnits":[{{"brokerCluster":"K_test"}}]}},
              {{"topic":"on-rocketmq","topicUnits":[{{"brokerCluster":"R_test"}}]}},
              {{"topic":"on-nothing","topicUnits":[{{"brokerCluster":"N_test"}}]}}
            ]}}}}}}"#
    );
    let proxy = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let mut c = proxy.client().await;
    let send = |m: Message| Call::SendSync(Some(m), 5000);

    assert_eq!(call(&mut c, &send(msg(&topic, b"ok"))).await.0, 0);
    let (code, text, _) = call(&mut c, &send(msg(&topic, b""))).await;
    assert_eq!(
        (code, text.as_str()),
        (
            11,
            "FAILED: Message is too large or illegal or the length is 0"
        )
    );
    let (code, text, _) = call(&mut c, &send(msg("not-admitted", b"x"))).await;
    assert_eq!(
        (code, text.as_str()),
        (13, "FAILED: Topic is not in the proxy white list")
    );
    let (code, text, _) = call(&mut c, &send(msg(&delay_topic, b"x"))).await;
    assert_eq!((code, text.as_str()), (19, "FAILED: Topic is delay"));
    let chronos = Message {
        key: Some("chronos".into()),
        properties: vec![("from_chronos".into(), "from_chronos".into())],
        ..msg(&delay_topic, b"fired")
    };
    assert_eq!(
        call(&mut c, &send(chronos)).await.0,
        0,
        "from_chronos passes the delay gate"
    );
    // A bound cluster in neither map: no producer.
    let (code, text, _) = call(&mut c, &send(msg("on-nothing", b"x"))).await;
    assert_eq!(
        (code, text.as_str()),
        (21, "FAILED: no producer for cluster.")
    );
    // A RocketMQ cluster whose name server has no route for the topic: 14, never created.
    let (code, text, _) = call(&mut c, &send(msg("on-rocketmq", b"x"))).await;
    assert_eq!((code, text.as_str()), (14, "FAILED: Topic do not exist!"));
    let (code, text, _) = call(&mut c, &send(msg(&missing, b"x"))).await;
    assert_eq!((code, text.as_str()), (14, "FAILED: Topic do not exist!"));
    // A batch with one bad message sends nothing and answers that message's code.
    let batch = vec![
        msg(&topic, b"batch-never-1"),
        msg(&delay_topic, b"x"),
        msg(&topic, b""),
    ];
    assert_eq!(call(&mut c, &Call::SendBatchSync(batch)).await.0, 19);
    // Heartbeat on sendSync only.
    assert_eq!(
        call(&mut c, &send(msg("carrera_heartbeat", b""))).await.0,
        0
    );
    assert_eq!(
        call(
            &mut c,
            &Call::SendAsync(Some(msg("carrera_heartbeat", b"x")))
        )
        .await
        .0,
        13,
        "no heartbeat shortcut on sendAsync"
    );

    let got = consume(&kafka, &topic, 1, Duration::from_secs(20));
    assert_eq!(
        got.len(),
        1,
        "only the OK message reached the broker: {got:?}"
    );
    let fired = consume(&kafka, &delay_topic, 1, Duration::from_secs(20));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].value, b"fired");
    assert_eq!(
        fired[0].headers,
        vec![("from_chronos".to_string(), b"from_chronos".to_vec())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_answers_12_within_the_deadline() {
    let _stack = STACK.read().await;
    // A cluster whose only broker address refuses connections: the outcome cannot be known.
    let dead = format!("127.0.0.1:{}", free_port());
    let doc = local_config(&dead, &[("orders", "")], "");
    let proxy = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let mut c = proxy.client().await;
    for timeout in [300i64, 800] {
        let started = Instant::now();
        let (code, text, _) =
            call(&mut c, &Call::SendSync(Some(msg("orders", b"x")), timeout)).await;
        let took = started.elapsed();
        assert_eq!((code, text.as_str()), (12, "FAILED: Send timeout"));
        // Generous bound: the answer must come at the deadline, not after librdkafka's own timeouts.
        assert!(
            took < Duration::from_millis(timeout as u64 + 1500),
            "answered after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(timeout as u64 - 5),
            "answered early: {took:?}"
        );
    }
}
