//! Message validation (forwarding.md §2): every failure is code 11.

use crate::proto::Message;

/// Property keys reserved by RocketMQ (case-sensitive).
pub const RESERVED_PROPERTIES: &[&str] = &[
    "TRACE_ON",
    "MSG_REGION",
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
];

/// Longest key or tags, in UTF-16 code units (Java `String.length()`).
pub const MAX_KEY_UTF16: usize = 255;

/// Why a message is illegal (logged; the wire answer is always 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A string field is not UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// Topic absent or empty.
    #[error("empty topic")]
    Topic,
    /// Key too long.
    #[error("key too long")]
    Key,
    /// Tags too long.
    #[error("tags too long")]
    Tags,
    /// Reserved, blank or separator-bearing property.
    #[error("illegal property")]
    Property,
    /// Topic uses the internal prefix.
    #[error("reserved topic prefix")]
    InnerPrefix,
    /// Empty body.
    #[error("empty body")]
    EmptyBody,
    /// Body above the topic's limit.
    #[error("body too large")]
    TooLarge,
}

/// Java `String.length()` of a string.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Java `trim()`: strips code points <= U+0020 at both ends.
pub fn is_blank(s: &str) -> bool {
    s.trim_matches(|c: char| c <= '\u{20}').is_empty()
}

/// Checks tags and properties (shared with delay messages).
pub fn check_tags_and_properties(
    tags: Option<&str>,
    properties: &[(String, String)],
) -> Result<(), Invalid> {
    if tags.is_some_and(|t| utf16_len(t) > MAX_KEY_UTF16) {
        return Err(Invalid::Tags);
    }
    for (k, v) in properties {
        let separator = |s: &str| s.contains(['\u{1}', '\u{2}']);
        if RESERVED_PROPERTIES.contains(&k.as_str())
            || is_blank(k)
            || is_blank(v)
            || separator(k)
            || separator(v)
        {
            return Err(Invalid::Property);
        }
    }
    Ok(())
}

/// Validates a normal message against the topic's size limit and the inner prefix.
pub fn validate(m: &Message, size_limit: usize, inner_prefix: &str) -> Result<(), Invalid> {
    if m.invalid_utf8 {
        return Err(Invalid::Utf8);
    }
    let topic = m.topic.as_deref().unwrap_or("");
    if topic.is_empty() {
        return Err(Invalid::Topic);
    }
    if m.key
        .as_deref()
        .is_some_and(|k| utf16_len(k) > MAX_KEY_UTF16)
    {
        return Err(Invalid::Key);
    }
    check_tags_and_properties(m.tags.as_deref(), &m.properties)?;
    if !is_blank(inner_prefix) && topic.starts_with(inner_prefix) {
        return Err(Invalid::InnerPrefix);
    }
    match m.payload() {
        None => Err(Invalid::EmptyBody),
        Some(b) if b.is_empty() => Err(Invalid::EmptyBody),
        Some(b) if b.len() > size_limit => Err(Invalid::TooLarge),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ok() -> Message {
        Message {
            topic: Some("t".into()),
            body: Some(Bytes::from_static(b"x")),
            ..Default::default()
        }
    }

    fn check(m: Message) -> Result<(), Invalid> {
        validate(&m, 10, "inner_")
    }

    #[test]
    fn validation_table() {
        assert_eq!(check(ok()), Ok(()));
        assert_eq!(
            check(Message {
                topic: None,
                ..ok()
            }),
            Err(Invalid::Topic)
        );
        assert_eq!(
            check(Message {
                topic: Some(String::new()),
                ..ok()
            }),
            Err(Invalid::Topic)
        );
        assert_eq!(
            check(Message {
                key: Some("k".repeat(255)),
                ..ok()
            }),
            Ok(())
        );
        assert_eq!(
            check(Message {
                key: Some("k".repeat(256)),
                ..ok()
            }),
            Err(Invalid::Key)
        );
        // a character outside the BMP counts as two UTF-16 units
        assert_eq!(
            check(Message {
                key: Some(format!("{}😀", "k".repeat(254))),
                ..ok()
            }),
            Err(Invalid::Key)
        );
        assert_eq!(
            check(Message {
                tags: Some("t".repeat(256)),
                ..ok()
            }),
            Err(Invalid::Tags)
        );
        let prop = |k: &str, v: &str| Message {
            properties: vec![(k.into(), v.into())],
            ..ok()
        };
        assert_eq!(check(prop("KEYS", "v")), Err(Invalid::Property));
        assert_eq!(check(prop("keys", "v")), Ok(()));
        assert_eq!(check(prop("from_chronos", "v")), Ok(()));
        assert_eq!(check(prop(" \t", "v")), Err(Invalid::Property));
        assert_eq!(check(prop("k", " ")), Err(Invalid::Property));
        assert_eq!(check(prop("k", "a\u{1}b")), Err(Invalid::Property));
        assert_eq!(
            check(Message {
                topic: Some("inner_x".into()),
                ..ok()
            }),
            Err(Invalid::InnerPrefix)
        );
        assert_eq!(
            check(Message { body: None, ..ok() }),
            Err(Invalid::EmptyBody)
        );
        assert_eq!(
            check(Message {
                body: Some(Bytes::new()),
                value: Some(Bytes::from_static(b"v")),
                ..ok()
            }),
            Err(Invalid::EmptyBody)
        );
        assert_eq!(
            check(Message {
                body: None,
                value: Some(Bytes::from_static(b"v")),
                ..ok()
            }),
            Ok(())
        );
        assert_eq!(
            check(Message {
                body: Some(Bytes::from(vec![0; 11])),
                ..ok()
            }),
            Err(Invalid::TooLarge)
        );
        assert_eq!(
            check(Message {
                invalid_utf8: true,
                ..ok()
            }),
            Err(Invalid::Utf8)
        );
        // blank inner prefix reserves nothing
        assert_eq!(
            validate(
                &Message {
                    topic: Some(" x".into()),
                    ..ok()
                },
                10,
                " "
            ),
            Ok(())
        );
    }
}
