//! Record -> RocketMQ message (forwarding.md §7.2): KEYS, TAGS, user properties unchanged.

use rocketmq_model::common::message::message_single::Message;

use crate::writer::{Record, SendError};

/// Upper bound of the encoded properties string (a Java short on the wire).
const MAX_PROPERTIES_BYTES: usize = 32_767;

/// Bytes the library adds to the properties string: `WAIT`, `UNIQ_KEY` (32 hex characters),
/// each with its two separators.
const LIBRARY_PROPERTY_BYTES: usize = "WAIT".len() + "true".len() + "UNIQ_KEY".len() + 32 + 4;

/// Builds the message of `rec`; 11-class errors for what the broker could not decode.
pub fn build(rec: &Record) -> Result<Message, SendError> {
    let mut b = Message::builder().topic(&*rec.topic).body(rec.body.clone());
    let mut props_len = LIBRARY_PROPERTY_BYTES;
    if let Some(k) = rec.key.as_deref().filter(|k| !k.is_empty()) {
        props_len += "KEYS".len() + k.len() + 2;
        b = b.key(k);
    }
    if let Some(t) = rec.tags.as_deref().filter(|t| !t.is_empty()) {
        props_len += "TAGS".len() + t.len() + 2;
        b = b.tags(t);
    }
    let mut m = b.build().map_err(|e| SendError::Illegal(e.to_string()))?;
    let map = m.properties_mut().as_map_mut();
    for (k, v) in &rec.properties {
        props_len += k.len() + v.len() + 2;
        // Inserted directly: user properties pass through untouched, as in DDMQ (the builder's
        // checked setter refuses names the validation step already handled).
        map.insert(k.as_str().into(), v.as_str().into());
    }
    if props_len > MAX_PROPERTIES_BYTES {
        return Err(SendError::Illegal(format!(
            "properties take {props_len} bytes, more than {MAX_PROPERTIES_BYTES}"
        )));
    }
    Ok(m)
}

/// Encoded size of `m` inside a batch body (forwarding.md §7.3).
pub fn batch_size(rec: &Record) -> usize {
    let props: usize = rec
        .properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum::<usize>()
        + rec.key.as_ref().map_or(0, |k| k.len() + 6)
        + rec.tags.as_ref().map_or(0, |t| t.len() + 6)
        + LIBRARY_PROPERTY_BYTES;
    22 + rec.body.len() + props
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rocketmq_model::common::message::MessageTrait;

    fn rec() -> Record {
        Record {
            topic: "t".into(),
            key: Some("k1".into()),
            body: Bytes::from_static(b"body"),
            tags: Some("tagA".into()),
            properties: vec![
                ("traceId".into(), "x".into()),
                ("UNIQ_KEYX".into(), "y".into()),
            ],
            partition_id: -1,
            hash_id: 3,
            opts: Default::default(),
        }
    }

    #[test]
    fn keys_tags_and_user_properties_are_carried() {
        let m = build(&rec()).unwrap();
        let p = m.get_properties();
        let get = |k: &str| p.get(k).map(|v| v.to_string());
        assert_eq!(get("KEYS").as_deref(), Some("k1"));
        assert_eq!(get("TAGS").as_deref(), Some("tagA"));
        assert_eq!(get("traceId").as_deref(), Some("x"));
        assert_eq!(get("UNIQ_KEYX").as_deref(), Some("y"));
        assert_eq!(get("WAIT").as_deref(), Some("true"));
        assert_eq!(m.get_body().map(|b| b.to_vec()), Some(b"body".to_vec()));
    }

    #[test]
    fn empty_key_and_tags_are_omitted_and_huge_properties_refused() {
        let mut r = rec();
        r.key = Some(String::new());
        r.tags = Some(String::new());
        let m = build(&r).unwrap();
        assert!(m.get_properties().get("KEYS").is_none());
        assert!(m.get_properties().get("TAGS").is_none());
        r.properties = vec![("big".into(), "v".repeat(40_000))];
        assert!(matches!(build(&r), Err(SendError::Illegal(_))));
    }
}
