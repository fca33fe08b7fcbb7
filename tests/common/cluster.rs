//! What the cluster-mode tests (tests/stack/cluster*.rs) name the same way: fresh journal names
//! per run, the delay section that puts the journal under the inner-topic prefix, the seed.

/// Fresh names of one cluster run: the inner-topic prefix, the journal topic under it, and the
/// scheduler's consumer group.
pub struct Journal {
    /// `delay.chronosInnerTopicPrefix`.
    pub prefix: String,
    /// `scheduler.cluster.journalTopic`.
    pub topic: String,
    /// `scheduler.cluster.group`.
    pub group: String,
}

impl Journal {
    /// Names no other run uses.
    pub fn fresh() -> Journal {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("pproxy_inner_{}_", &unique[..8]);
        Journal {
            topic: format!("{prefix}journal_{unique}"),
            group: format!("pproxy-scheduler-test-{unique}"),
            prefix,
        }
    }

    /// The `delay` section of the local proxy configuration (the `extra` of `local_config`).
    pub fn delay_section(&self) -> String {
        format!(
            r#""delay":{{"chronosInnerTopicPrefix":"{}","innerTopicNum":1}},"#,
            self.prefix
        )
    }
}

/// `PPROXY_CLUSTER_SEED` when set (to replay a run), else a random seed.
pub fn seed() -> u64 {
    std::env::var("PPROXY_CLUSTER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Now, epoch ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
