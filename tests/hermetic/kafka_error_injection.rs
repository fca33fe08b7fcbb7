//! Broker error codes a real single-node Kafka cannot be made to return on demand
//! (authorization failure, record too large from the broker side). A librdkafka mock cluster
//! stands in here ONLY to inject those error codes into produce responses; everything else is
//! tested against the real Kafka in kafka_forwarding.rs.

use std::time::Duration;

use bytes::Bytes;
use pproxy::config::model::KafkaConfiguration;
use pproxy::config::settings::ForwardingSettings;
use pproxy::proto::Code;
use pproxy::writer::kafka::KafkaCluster;
use pproxy::writer::Record;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::time::Instant;

fn record(topic: &str) -> Record {
    Record {
        topic: topic.into(),
        key: Some("k".into()),
        body: Bytes::from_static(b"v"),
        tags: None,
        properties: vec![],
        partition_id: 0,
        hash_id: 0,
        opts: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_broker_errors_map_to_result_codes() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("t", 1, 1).expect("topic");
    let conf: serde_json::Value =
        serde_json::json!({"bootstrapServers": [mock.bootstrap_servers()]});
    let conf = KafkaConfiguration::parse(conf.as_object().expect("object")).expect("conf");
    let fwd = ForwardingSettings {
        kafka_message_timeout_ms: Duration::from_millis(3000),
        ..Default::default()
    };
    let cluster = KafkaCluster::new(
        "K",
        &conf,
        &fwd,
        &Default::default(),
        1,
        None,
        pproxy::metrics::ClusterMetrics::unregistered(),
    )
    .expect("cluster");
    let deadline = || Instant::now() + Duration::from_secs(5);

    // Warm metadata with a clean send first; each injected error is followed by a clean send.
    assert_eq!(cluster.send(&record("t"), deadline()).await, Ok(()));

    let cases = [
        (
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            Code::Illegal,
        ),
        (
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD,
            Code::Illegal,
        ),
        (
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            Code::Failed,
        ),
    ];
    for (err, want) in cases {
        mock.request_errors(RDKafkaApiKey::Produce, &[err]);
        let got = cluster.send(&record("t"), deadline()).await;
        let code = got.as_ref().map_or_else(|e| e.code(), |_| Code::Ok);
        assert_eq!(code, want, "{err:?} -> {got:?}");
        if want == Code::Illegal {
            assert_eq!(cluster.send(&record("t"), deadline()).await, Ok(()));
        }
    }
    // The producer is not left in a fatal state: another topic still works. (librdkafka keeps
    // an authorization failure on the topic itself until its metadata is refreshed.)
    mock.create_topic("t2", 1, 1).expect("topic");
    assert_eq!(cluster.send(&record("t2"), deadline()).await, Ok(()));
}
