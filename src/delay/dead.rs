//! Dead letters in cluster mode (docs/CLUSTER.md, "Dead letters"): each partition keeps its own,
//! so a list asked of any node is this node's plus every other member's (asked with the
//! forwarded header), merged; re-drive and purge are sent on to the id's owner.

use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::service::Answer;
use crate::http::Method;

/// A merged list and, when some part of it is missing, why (for the `X-Pproxy-Incomplete`
/// header: the JSON answer keeps its shape, an array of dead letters).
pub struct DeadList {
    /// Status and JSON body.
    pub answer: Answer,
    /// What could not be listed: members that did not answer, partitions without an owner.
    pub incomplete: Option<String>,
}

/// `items` (each with `deadMs`) from every part: the oldest first, at most `limit`.
pub fn merge(parts: Vec<Vec<Value>>, limit: usize) -> Vec<Value> {
    let mut all: Vec<Value> = parts.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["deadMs"].as_i64().unwrap_or(i64::MAX),
                v["id"].to_string(),
                v["k"].as_u64(),
            )
        };
        key(a).cmp(&key(b))
    });
    all.truncate(limit);
    all
}

/// Journal partitions in `0..partitions` that no one listed.
pub fn unlisted(partitions: i32, listed: &[i32]) -> Vec<i32> {
    (0..partitions).filter(|p| !listed.contains(p)).collect()
}

/// The query string of a forwarded list.
fn list_query(topic: Option<&str>, limit: usize) -> String {
    match topic {
        Some(t) => format!(
            "/delay/dead?limit={limit}&topic={}",
            utf8_percent_encode(t, NON_ALPHANUMERIC)
        ),
        None => format!("/delay/dead?limit={limit}"),
    }
}

/// The path of a forwarded re-drive or purge.
pub fn action_path(id: &str, k: u64, action: &str) -> String {
    format!(
        "/delay/dead/{}/{k}/{action}",
        utf8_percent_encode(id, NON_ALPHANUMERIC)
    )
}

/// Every member's dead letters but this node's own (`local`, already tagged), merged.
pub async fn cluster_list(
    cluster: &Arc<Cluster>,
    local: Vec<Value>,
    local_partitions: Vec<i32>,
    topic: Option<&str>,
    limit: usize,
    token: Option<&str>,
) -> DeadList {
    let members = cluster.other_members().await;
    let path = list_query(topic, limit);
    let asks = members.iter().map(|(node, admin, parts)| {
        let path = &path;
        async move {
            let got = cluster.peers.call(Method::GET, admin, path, token).await;
            let listed = match got {
                Ok((200, body)) => serde_json::from_str::<Vec<Value>>(&body)
                    .map_err(|e| format!("answer not a list: {e}")),
                Ok((status, body)) => Err(format!("answered {status}: {body}")),
                Err(e) => Err(e.to_string()),
            };
            (node, admin, parts, listed)
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut parts = vec![local];
    let mut covered = local_partitions;
    let mut missing = Vec::new();
    for (node, admin, owned, listed) in answers {
        // A member that failed is named once; its partitions are not "without owner".
        covered.extend(owned);
        match listed {
            Ok(items) => parts.push(items),
            Err(e) => missing.push(format!("{node} at {admin} (partitions {owned:?}): {e}")),
        }
    }
    let orphans = unlisted(cluster.partitions, &covered);
    if !orphans.is_empty() {
        missing.push(format!("partitions {orphans:?} have no owner now"));
    }
    let items = merge(parts, limit);
    DeadList {
        answer: (200, json!(items).to_string()),
        incomplete: (!missing.is_empty()).then(|| missing.join("; ")),
    }
}

/// A re-drive or purge of an id whose partition `p` this node does not own, sent to its owner;
/// answers the owner's answer.
pub async fn forward_action(
    cluster: &Arc<Cluster>,
    p: i32,
    id: &str,
    k: u64,
    action: &str,
    token: Option<&str>,
) -> Answer {
    let Some((node, admin)) = cluster.owner_of(p).await else {
        return (
            503,
            json!({"error": "no node owns this id's partition now", "journalPartition": p})
                .to_string(),
        );
    };
    match cluster
        .peers
        .call(Method::POST, &admin, &action_path(id, k, action), token)
        .await
    {
        Ok(answer) => tagged(answer, p, &node),
        Err(e) => (
            503,
            json!({"error": format!("owner {node} at {admin}: {e}"), "journalPartition": p})
                .to_string(),
        ),
    }
}

/// An object answer with `journalPartition` and (unless the owner set it) `servedBy`.
pub fn tagged((code, body): Answer, p: i32, by: &str) -> Answer {
    match serde_json::from_str::<Value>(&body) {
        Ok(mut v) if v.is_object() => {
            v["journalPartition"] = json!(p);
            if v.get("servedBy").is_none() {
                v["servedBy"] = json!(by);
            }
            (code, v.to_string())
        }
        _ => (code, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_oldest_first_and_bounded() {
        let a = vec![
            json!({"id": "a", "k": 0, "deadMs": 30}),
            json!({"id": "b", "k": 0, "deadMs": 10}),
        ];
        let b = vec![json!({"id": "c", "k": 1, "deadMs": 20})];
        let ids = |l: Vec<Value>| {
            l.iter()
                .map(|v| v["id"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(merge(vec![a.clone(), b.clone()], 10)), ["b", "c", "a"]);
        assert_eq!(ids(merge(vec![a, b], 2)), ["b", "c"]);
        assert!(merge(vec![], 5).is_empty());
    }

    #[test]
    fn partitions_nobody_listed() {
        assert_eq!(unlisted(4, &[0, 2, 3]), [1]);
        assert!(unlisted(2, &[1, 0]).is_empty());
    }

    #[test]
    fn forwarded_paths_are_encoded() {
        assert_eq!(
            action_path("a/b c", 2, "purge"),
            "/delay/dead/a%2Fb%20c/2/purge"
        );
        assert_eq!(
            list_query(Some("t&x"), 5),
            "/delay/dead?limit=5&topic=t%26x"
        );
        assert_eq!(list_query(None, 5), "/delay/dead?limit=5");
    }

    #[test]
    fn answers_are_tagged_with_partition_and_server() {
        let (code, body) = tagged((200, r#"{"purged":true}"#.into()), 3, "n1");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            (code, v["journalPartition"].as_i64(), v["servedBy"].as_str()),
            (200, Some(3), Some("n1"))
        );
        let (_, body) = tagged((200, r#"{"servedBy":"n2"}"#.into()), 3, "n1");
        assert!(body.contains("n2"));
        assert_eq!(tagged((404, "x".into()), 1, "n").1, "x");
    }
}
