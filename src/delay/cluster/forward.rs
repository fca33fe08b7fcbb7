//! Status queries for ids owned by another node: find the partition's owner in the group
//! description and ask its admin API (delay.md §10, "Status").

use std::time::Duration;

use crate::http::client::{self, HttpError};
use crate::http::{header, HeaderName, Method};

/// Header marking a forwarded query (`X-Pproxy-Forwarded`), so a node that is not the owner
/// answers instead of forwarding again.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-pproxy-forwarded");

/// Partitions of `topic` in a member assignment (Kafka's ConsumerProtocolAssignment: version
/// i16, then topics each with a name and partitions, then user data).
pub fn assigned_partitions(a: &[u8], topic: &str) -> Vec<i32> {
    parse_assignment(a, topic).unwrap_or_default()
}

fn parse_assignment(a: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut pos = 2usize; // version
    let n = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = i16::from_be_bytes(a.get(pos..pos + 2)?.try_into().ok()?).max(0) as usize;
        pos += 2;
        let name = a.get(pos..pos + len)?;
        pos += len;
        let np = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        for _ in 0..np.max(0) {
            let p = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
            pos += 4;
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// Node name and admin address from an ownership member's client id
/// (`pproxy-sched|<node>|<admin>`).
pub fn member_address(client_id: &str) -> Option<(String, String)> {
    let mut it = client_id.splitn(3, '|');
    if it.next()? != "pproxy-sched" {
        return None;
    }
    Some((it.next()?.to_string(), it.next()?.to_string()))
}

/// `GET <path>` on another node's admin port; answers (status, body).
pub async fn get(admin: &str, path: &str, token: Option<&str>) -> Result<(u16, String), HttpError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![(FORWARDED_HEADER, "1")];
    if let Some(auth) = &auth {
        headers.push((header::AUTHORIZATION, auth.as_str()));
    }
    let answer = client::request(
        Method::GET,
        admin,
        path,
        &headers,
        None,
        Duration::from_secs(5),
    )
    .await?;
    Ok((answer.status.as_u16(), answer.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_bytes_give_the_topic_partitions() {
        // version 1; two topics: "j" [0, 3] and "other" [1]; empty user data.
        let mut a = vec![0u8, 1];
        a.extend_from_slice(&2i32.to_be_bytes());
        a.extend_from_slice(&1i16.to_be_bytes());
        a.extend_from_slice(b"j");
        a.extend_from_slice(&2i32.to_be_bytes());
        a.extend_from_slice(&0i32.to_be_bytes());
        a.extend_from_slice(&3i32.to_be_bytes());
        a.extend_from_slice(&5i16.to_be_bytes());
        a.extend_from_slice(b"other");
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(assigned_partitions(&a, "j"), vec![0, 3]);
        assert_eq!(assigned_partitions(&a, "other"), vec![1]);
        assert!(assigned_partitions(&a[..9], "j").is_empty(), "truncated");
        assert!(assigned_partitions(&[], "j").is_empty());
    }

    #[test]
    fn client_ids_carry_node_and_admin() {
        assert_eq!(
            member_address("pproxy-sched|10.0.0.1:9613|10.0.0.1:9614"),
            Some(("10.0.0.1:9613".into(), "10.0.0.1:9614".into()))
        );
        assert_eq!(member_address("rdkafka"), None);
    }
}
