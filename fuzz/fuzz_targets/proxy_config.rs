//! The console's JSON documents: PProxyConfig (`ProxyConfig::parse`, both modes), a TopicConfig
//! document (`TopicConfig::parse`) and `defaultTopicInfoConf` (`parse_topic_info`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pproxy::config::model::{parse_topic_info, ProxyConfig, TopicConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let zk = ProxyConfig::parse(s, true);
    let local = ProxyConfig::parse(s, false);
    // ZooKeeper mode only adds checks.
    if let Ok(zk) = zk {
        let local = local
            .as_ref()
            .expect("valid in ZooKeeper mode, so valid locally");
        let json = |p: &ProxyConfig| serde_json::to_value(p).expect("serializable");
        assert_eq!(json(local), json(&zk));
    }
    if let Ok(p) = &local {
        assert!(!p.broker_clusters.is_empty());
        assert!(p.carrera.max_tps > 0 && p.carrera.max_read_buffer_bytes > 0);
        assert!(p.carrera.inner_topic_num >= 1);
        assert!(p.carrera.tps_warning_ratio > 0.0 && p.carrera.tps_warning_ratio <= 1.0);
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(s) else {
        return;
    };
    if let Some(o) = v.as_object() {
        let _ = TopicConfig::parse(o, None);
        if let Ok(t) = TopicConfig::parse(o, Some("named")) {
            assert_eq!(t.topic, "named");
            assert!(t.limiter_failure_retry_interval >= -1);
        }
    }
    let _ = parse_topic_info(&v);
});
