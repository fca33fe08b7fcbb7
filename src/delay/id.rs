//! uniqDelayMsgId generation (delay.md §4.2); parsing lives with the record in the scheduler.

use crate::forward::route::java_hash;

/// OID namespace for UUID v5 of non-canonical client uuids.
const OID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6ba7b812_9dad_11d1_80b4_00c04fd430c8);

fn is_canonical_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The uuid used in an id: canonical lower-cased, random v4 when absent, else v5 of the bytes.
pub fn normalize_uuid(client: Option<&str>) -> String {
    match client {
        None | Some("") => uuid::Uuid::new_v4().to_string(),
        Some(u) if is_canonical_uuid(u) => u.to_ascii_lowercase(),
        Some(u) => uuid::Uuid::new_v5(&OID_NAMESPACE, u.as_bytes()).to_string(),
    }
}

/// seq = non-negative Java hash of the uuid modulo innerTopicNum.
pub fn seq_for(uuid: &str, inner_topic_num: i64) -> i64 {
    i64::from(java_hash(uuid)).rem_euclid(inner_topic_num.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler::DelayId;

    fn parse(id: &str) -> Option<DelayId> {
        DelayId::parse(id)
    }

    #[test]
    fn parses_ddmq_and_extended_ids() {
        let id = "1507609164-2-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3";
        let p = parse(id).unwrap();
        assert_eq!(p.timestamp, 1_507_609_164);
        assert_eq!(p.dtype, 2);
        assert_eq!(p.to_string(), id);
        let ms = "1507609164000-3-15077819640000-5-2-10-0-14F22520-AD72-11E7-91BE-6EE54DA579E3";
        let p = parse(ms).unwrap();
        assert_eq!(p.expire, 15_077_819_640_000);
        assert_eq!(p.uuid, "14f22520-ad72-11e7-91be-6ee54da579e3");
        for bad in [
            "",
            "garbage",
            "1-2-3-4-5-6-7-8-9-10-11",
            "-1-2-3-4-5-6-14f22520-ad72-11e7-91be-6ee54da579e3",
            "99999999999999999999-2-3-4-5-6-0-14f22520-ad72-11e7-91be-6ee54da579e3",
            "1-2-3-4-5-6-0-14f2252-ad72-11e7-91be-6ee54da579e3",
            "1-2-3-4-5-6-0-14f22520-ad72-11e7-91be-6ee54da579e!",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn uuid_normalization_is_deterministic() {
        assert_eq!(
            normalize_uuid(Some("14F22520-AD72-11E7-91BE-6EE54DA579E3")),
            "14f22520-ad72-11e7-91be-6ee54da579e3"
        );
        let a = normalize_uuid(Some("order-17"));
        assert_eq!(a, normalize_uuid(Some("order-17")));
        assert!(is_canonical_uuid(&a));
        assert_ne!(normalize_uuid(None), normalize_uuid(None));
    }

    #[test]
    fn seq_is_non_negative() {
        // java hash of this string is negative
        assert!(java_hash("polygenelubricants") < 0);
        let s = seq_for("polygenelubricants", 7);
        assert!((0..7).contains(&s));
        assert_eq!(seq_for("anything", 1), 0);
    }
}
