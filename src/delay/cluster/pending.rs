//! `scheduler.maxPending` in cluster mode. The node that journals an add cannot see the owners'
//! stores, so each node keeps a cluster-wide pending total: refreshed every second from its own
//! partitions and every other member's `GET /delay/cluster`, and raised by one for each add
//! this node journals in between (so a burst on one node cannot overshoot by more than what the
//! other nodes accept within one refresh). An add is refused (code 15, as single-node) while the
//! total is at or above the limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::Method;

use super::Cluster;

/// How often the total is refreshed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The cluster-wide pending count of one node's view.
#[derive(Default)]
pub struct PendingTotal {
    total: AtomicI64,
    /// Set once a refresh has seen every member (until then nothing is refused).
    known: AtomicBool,
}

impl PendingTotal {
    /// The total, when an add must be refused under `limit` (0 = no limit).
    pub fn refuses(&self, limit: u64) -> Option<i64> {
        let total = self.total.load(Ordering::Relaxed);
        let full = limit > 0
            && self.known.load(Ordering::Relaxed)
            && total >= i64::try_from(limit).unwrap_or(i64::MAX);
        full.then_some(total)
    }

    /// Counts an add this node journaled since the last refresh.
    pub fn accepted(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the total with a fresh count.
    pub fn set(&self, total: i64) {
        self.total.store(total, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
    }

    /// The total now (shown by `/delay/cluster`).
    pub fn get(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Sum of the `pending` figures of a `GET /delay/cluster` answer.
pub fn pending_of(cluster_json: &serde_json::Value) -> Option<i64> {
    cluster_json["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["pending"].as_i64()).sum())
}

/// Refreshes `cluster.pending` every [`REFRESH`] while `scheduler.maxPending` is set, until the
/// task is dropped at shutdown. A member that does not answer counts with its last known figure.
pub async fn refresh(cluster: Arc<Cluster>) {
    let mut last: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::time::sleep(REFRESH).await;
        let settings = cluster.sink.live.settings();
        if settings.scheduler.max_pending == 0 {
            continue;
        }
        let token = settings.server.admin_token.clone();
        let members = cluster.other_members().await;
        let asks = members.iter().map(|(_, admin, _)| {
            let (c, token) = (&cluster, token.as_deref());
            async move {
                let got = c
                    .peers
                    .call(Method::GET, admin, "/delay/cluster", token)
                    .await;
                let figure = match got {
                    Ok((200, body)) => serde_json::from_str(&body)
                        .ok()
                        .and_then(|v| pending_of(&v)),
                    _ => None,
                };
                (admin.clone(), figure)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut seen = HashMap::new();
        for (admin, figure) in answers {
            match figure.or_else(|| last.get(&admin).copied()) {
                Some(n) => {
                    seen.insert(admin, n);
                }
                None => tracing::debug!(%admin, "pending count of a member unknown"),
            }
        }
        last = seen;
        cluster
            .pending
            .set(cluster.local_pending() + last.values().sum::<i64>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_at_or_above_the_limit_once_known() {
        let t = PendingTotal::default();
        t.accepted();
        assert_eq!(t.refuses(1), None, "no refusal before the first refresh");
        t.set(4);
        assert_eq!(t.refuses(0), None, "0 = no limit");
        assert_eq!(t.refuses(5), None);
        t.accepted();
        assert_eq!(t.refuses(5), Some(5), "at the limit");
        t.set(2);
        assert_eq!(t.refuses(5), None, "a refresh after fires lowers it");
    }

    #[test]
    fn cluster_answers_sum_their_partitions() {
        let v = serde_json::json!({"partitions": [{"pending": 3}, {"pending": 4}, {"state": "replaying"}]});
        assert_eq!(pending_of(&v), Some(7));
        assert_eq!(pending_of(&serde_json::json!({"error": "x"})), None);
    }
}
