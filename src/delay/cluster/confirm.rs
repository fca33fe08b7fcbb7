//! A journaled cancel is answered 0 only once the owner of its journal partition has applied
//! it, so nothing the owner hands to the writer after the answer fires the cancelled id (as in
//! single-node mode, docs/CLUSTER.md "Cancels"). The answering node waits on its own partition
//! when it owns it, else asks the owner over the admin port
//! (`GET /delay/cluster/applied?partition=&offset=&waitMs=`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{forward, Cluster, ClusterError};

/// How long a cancel waits for its owner's confirmation at most.
pub const CONFIRM_BOUND: Duration = Duration::from_secs(5);
/// Pause between two attempts to find or ask the owner.
const RETRY: Duration = Duration::from_millis(100);
/// Kept from a remote wait so the owner's answer arrives before the caller's bound.
const ANSWER_MARGIN: Duration = Duration::from_millis(200);
/// The longest wait one remote ask may request: the admin client gives up after 5 s.
const ASK_MAX: Duration = Duration::from_millis(4500);

/// Waits until the owner of partition `p` has applied the journal through `offset`, at most
/// until `until`; the owner is asked with `admin_token` when it is another node.
///
/// No owner at the moment (a rebalance) is waited out: the next owner claims `p` after the
/// cancel was acknowledged, so it replays the cancel before it fires anything, and confirms at
/// once; a revoked owner stopped firing before the group moved `p`.
pub async fn applied(
    cluster: &Arc<Cluster>,
    p: i32,
    offset: i64,
    until: Instant,
    admin_token: Option<&str>,
) -> Result<(), ClusterError> {
    let mut why: String;
    // The first look may use a recent group description; a retry asks the group again.
    let mut fresh = false;
    loop {
        // A partition lost to a newer claim stays listed until its revoke: not an owner.
        if let Some(o) = cluster.owned(p).filter(|o| !o.lost.is_cancelled()) {
            tokio::select! {
                done = o.applied_through(offset) => if done {
                    count(cluster, LOCAL);
                    return Ok(());
                },
                _ = tokio::time::sleep_until(until) => {
                    count(cluster, UNCONFIRMED);
                    return Err(ClusterError::Unconfirmed("not applied in time by this node".into()));
                }
            }
            why = "partition lost while waiting".into();
        } else {
            match owner_of(cluster, p, fresh).await {
                // The group still names this node: it was revoked a moment ago.
                Some((_, admin)) if admin == cluster.admin => why = "ownership moving".into(),
                Some((node, admin)) => {
                    match ask(&cluster.peers, &admin, p, offset, until, admin_token).await {
                        Ok(()) => {
                            count(cluster, OWNER);
                            return Ok(());
                        }
                        Err(e) => why = format!("owner {node} at {admin}: {e}"),
                    }
                }
                None => why = "no owner".into(),
            }
        }
        if Instant::now() + RETRY >= until {
            count(cluster, UNCONFIRMED);
            return Err(ClusterError::Unconfirmed(why));
        }
        tokio::time::sleep(RETRY).await;
        fresh = true;
    }
}

/// How long a group description is reused by the cancels that follow it.
const OWNERS_TTL: Duration = Duration::from_secs(1);

/// Node name and admin address of the member assigned `p`, from a group description at most
/// [`OWNERS_TTL`] old unless `fresh`.
async fn owner_of(cluster: &Arc<Cluster>, p: i32, fresh: bool) -> Option<(String, String)> {
    let cached = if fresh {
        None
    } else {
        cluster
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < OWNERS_TTL)
            .map(|(_, m)| m.clone())
    };
    let members = match cached {
        Some(m) => m,
        None => {
            let m = cluster.members().await;
            *cluster.owners.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((std::time::Instant::now(), m.clone()));
            m
        }
    };
    members
        .into_iter()
        .find(|(_, parts)| parts.contains(&p))
        .and_then(|(client_id, _)| forward::member_address(&client_id))
}

/// Indexes of [`super::ClusterStats::cancel_confirms`].
const LOCAL: usize = 0;
const OWNER: usize = 1;
const UNCONFIRMED: usize = 2;
/// Their `how` labels.
pub const CONFIRM_LABELS: [&str; 3] = ["local", "owner", "unconfirmed"];

fn count(cluster: &Cluster, how: usize) {
    cluster.stats.cancel_confirms[how].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Asks the owner at `admin` to confirm; it waits for the apply itself, up to what is left.
async fn ask(
    peers: &forward::Peers,
    admin: &str,
    p: i32,
    offset: i64,
    until: Instant,
    admin_token: Option<&str>,
) -> Result<(), String> {
    let wait = until
        .saturating_duration_since(Instant::now())
        .saturating_sub(ANSWER_MARGIN)
        .min(ASK_MAX);
    let path = format!(
        "/delay/cluster/applied?partition={p}&offset={offset}&waitMs={}",
        wait.as_millis()
    );
    match peers
        .call(crate::http::Method::GET, admin, &path, admin_token)
        .await
    {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(format!("{status} {body}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The owner's side: whether this node applied partition `p` through `offset`, waiting up to
/// `wait`. (status, JSON body): 200 once applied, 503 when this node does not own `p` or did
/// not apply it in time.
pub async fn answer(cluster: &Cluster, p: i32, offset: i64, wait: Duration) -> (u16, String) {
    let Some(o) = cluster.owned(p).filter(|o| !o.lost.is_cancelled()) else {
        let body =
            serde_json::json!({"error": "not the owner of this partition", "journalPartition": p});
        return (503, body.to_string());
    };
    let wait = wait.min(ASK_MAX);
    match tokio::time::timeout(wait, o.applied_through(offset)).await {
        Ok(true) => (
            200,
            serde_json::json!({"applied": true, "journalPartition": p, "node": cluster.node})
                .to_string(),
        ),
        Ok(false) => (
            503,
            serde_json::json!({"error": "partition lost while waiting", "journalPartition": p})
                .to_string(),
        ),
        Err(_) => (
            503,
            serde_json::json!({"error": "not applied within the wait", "journalPartition": p})
                .to_string(),
        ),
    }
}
