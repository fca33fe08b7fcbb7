//! Graceful shutdown under load against the real Kafka (operations.md §3): every request gets an
//! answer, new requests during the drain get 20, every request answered 0 is in the broker, and
//! the process exits 0.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use pproxy::client::Client;
use pproxy::proto::types::Reply;
use pproxy::proto::{Call, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_everything_and_loses_nothing() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("drain");
    create_topic(&kafka, &topic, 3).await;
    let doc = local_config(&kafka, &[(&topic, "")], "");
    let mut proxy = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let codes: Arc<Mutex<Vec<i32>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..16 {
        let (addr, topic, acked, codes) = (
            proxy.addr.clone(),
            topic.clone(),
            acked.clone(),
            codes.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, Protocol::Compact, Duration::from_secs(15))
                .await
                .expect("connect");
            for n in 0.. {
                let body = format!("{i}-{n}");
                let r = c
                    .call(&Call::SendSync(Some(msg(&topic, body.as_bytes())), 5000))
                    .await;
                let code = match r {
                    Ok(Reply::Result { code, .. }) => code,
                    other => panic!("request {body} got no answer: {other:?}"),
                };
                codes.lock().unwrap().push(code);
                match code {
                    0 => {
                        acked.lock().unwrap().insert(body);
                    }
                    20 => return, // as the SDKs do: move to another proxy
                    other => panic!("unexpected code {other}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopper = std::thread::spawn(move || {
        let code = proxy.stop();
        (code, proxy)
    });
    for c in clients {
        c.await.expect("client finished cleanly");
    }
    let (exit, _proxy) = stopper.join().expect("stop");
    assert_eq!(exit, Some(0), "clean exit after the drain");
    let codes = codes.lock().unwrap().clone();
    assert_eq!(
        codes.iter().filter(|c| **c == 20).count(),
        16,
        "each client saw 20 once"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "load ran: {} acked", acked.len());
    let got = consume(&kafka, &topic, acked.len(), Duration::from_secs(30));
    let stored: HashSet<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages missing: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "drain: {} acked, {} stored, {} answered 20",
        acked.len(),
        stored.len(),
        16
    );
}
