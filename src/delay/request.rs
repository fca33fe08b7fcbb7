//! Adds and cancels (`sendDelaySync`): validate, take a rate-limit permit, then hand the
//! request to the scheduler (single-node) or append it to the journal (cluster mode).

use std::sync::Arc;

use scheduler::{CancelResult, DelayId, SchedError};

use super::cluster;
use super::service::{Backend, DelayService};
use super::{build_add, validate};
use crate::metrics::labels::{DelayAdd, TopicResult};
use crate::proto::{Code, DelayMessage};

fn sched_failure(e: &SchedError) -> Code {
    match e {
        SchedError::Full => Code::RateLimited,
        SchedError::Store(_) | SchedError::Stopped | SchedError::Stuck(_) => {
            tracing::warn!(error = %e, "delay storage failure");
            Code::Failed
        }
    }
}

impl DelayService {
    /// Handles one `sendDelaySync` after the drain and ACL checks: the outcome and the id to answer.
    /// `principal` (ACLs on) owns what it adds, and may cancel only what it owns.
    pub async fn handle(
        &self,
        m: Option<DelayMessage>,
        deadline: tokio::time::Instant,
        principal: Option<&str>,
    ) -> (Code, String) {
        let Some(m) = m else {
            return (Code::Illegal, String::new());
        };
        let echo = if m.action == 2 {
            m.uniq_delay_msg_id.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        // One configuration snapshot for the whole request (forwarding.md §1).
        let snap = self.live.snapshot_full();
        let max_delay =
            crate::config::duration::as_secs_i64(self.live.settings().scheduler.max_delay_seconds);
        let route = match validate(&snap, max_delay, &m, now_ms) {
            Ok(r) => r,
            Err(code) => return (code, echo),
        };
        // Adds and cancels both take a permit of the delay topic's buckets (delay.md §3 step 18).
        let topic: &str = &route.name;
        let setting = route.limiter_failure_retry_interval;
        if let Err(code) = self
            .forwarder
            .limit_gate(&snap, &[(topic, 1)], setting, deadline)
            .await
        {
            return (code, echo);
        }
        let sched = match self.backend() {
            Some(Backend::Single(s)) => s,
            Some(Backend::Cluster(cluster)) => {
                let token = self.live.settings().server.admin_token.clone();
                let until =
                    deadline.min(tokio::time::Instant::now() + cluster::confirm::CONFIRM_BOUND);
                return handle_clustered(
                    cluster,
                    m,
                    echo,
                    now_ms,
                    principal,
                    snap.proxy.carrera.inner_topic_num,
                    (until, token.as_deref()),
                )
                .await;
            }
            None => return (Code::Failed, echo),
        };
        if m.action == 1 {
            let num = snap.proxy.carrera.inner_topic_num;
            let (id, rec) = build_add(m, num, now_ms, principal);
            let labels = DelayAdd {
                topic: route.name.clone(),
                r#type: rec.id.dtype,
            };
            return match sched.add(id.clone(), rec).await {
                Ok(new) => {
                    if new {
                        self.metrics.delay_adds.get_or_create(&labels).inc();
                    }
                    (Code::Ok, id)
                }
                Err(e) => (sched_failure(&e), String::new()),
            };
        }
        // Cancel: any occurrence id maps to its add id; an impossible one is simply unknown.
        let topic = m.topic.unwrap_or_default();
        let canonical = DelayId::canonical_of(echo.trim());
        let result = sched
            .cancel(canonical, topic.clone(), principal.map(str::to_string))
            .await;
        if let Ok(r) = &result {
            let labels = TopicResult {
                topic: route.name.clone(),
                result: r.name(),
            };
            self.metrics.delay_cancels.get_or_create(&labels).inc();
        }
        match result {
            Ok(CancelResult::TopicMismatch) => (Code::IllegalDelayId, echo),
            Ok(CancelResult::NotOwner) => {
                // Sampled with the other failure lines of code 30: a client cannot flood the log.
                let per_sec = self.live.settings().logging.failure_logs_per_sec;
                if let Some(suppressed) =
                    self.failures.admit(Code::IllegalDelayId.as_i32(), per_sec)
                {
                    tracing::warn!(principal, id = %echo, suppressed, "delay cancel refused: added by another principal");
                }
                (Code::IllegalDelayId, echo)
            }
            Ok(_) => (Code::Ok, echo),
            Err(e) => (sched_failure(&e), echo),
        }
    }
}

/// Cluster mode: the add or cancel is journaled and answered once the broker acknowledged it;
/// the partition's owner applies it (a cancel's topic and principal are checked there). A
/// cancel is answered 0 only once the owner confirmed it applied it, which `confirm` (the
/// bound, the admin token for asking another node) allows; unconfirmed, it is answered 10.
async fn handle_clustered(
    cluster: &Arc<cluster::Cluster>,
    m: DelayMessage,
    echo: String,
    now_ms: i64,
    principal: Option<&str>,
    inner_topic_num: i64,
    confirm: (tokio::time::Instant, Option<&str>),
) -> (Code, String) {
    let journal_failed = |e: &cluster::ClusterError| {
        if let cluster::ClusterError::Full(_) = e {
            // `maxPending` reached cluster-wide: the code single-node answers (SchedError::Full).
            return Code::RateLimited;
        }
        tracing::warn!(error = %e, "delay journal append failed");
        Code::Failed
    };
    if m.action == 1 {
        let (id, rec) = build_add(m, inner_topic_num, now_ms, principal);
        return match cluster.add(id.clone(), rec).await {
            Ok(()) => (Code::Ok, id),
            Err(e) => (journal_failed(&e), String::new()),
        };
    }
    let topic = m.topic.unwrap_or_default();
    let canonical = DelayId::canonical_of(echo.trim());
    let (p, offset) = match cluster
        .cancel(canonical, topic, principal.map(str::to_string))
        .await
    {
        Ok(at) => at,
        Err(e) => return (journal_failed(&e), echo),
    };
    let (until, token) = confirm;
    match cluster::confirm::applied(cluster, p, offset, until, token).await {
        Ok(()) => (Code::Ok, echo),
        Err(e) => {
            // The cancel is journaled and may still hold; a retried cancel is harmless.
            tracing::warn!(error = %e, partition = p, offset, "delay cancel not confirmed");
            (Code::Failed, echo)
        }
    }
}
