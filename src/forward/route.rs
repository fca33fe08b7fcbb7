//! Broker-cluster choice among a topic's candidates (forwarding.md §3).

use crate::proto::Message;

/// Java `String.hashCode` over UTF-16 code units, wrapping 32-bit.
pub fn java_hash(s: &str) -> i32 {
    let mut buf = [0u16; 2];
    s.chars().fold(0i32, |h, c| {
        c.encode_utf16(&mut buf)
            .iter()
            .fold(h, |h, &u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
    })
}

/// Index into a non-empty candidate list of length `n`; never negative.
pub fn choose_index(m: &Message, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let index: i64 = if m.partition_id >= 0 {
        i64::from(m.partition_id)
    } else if m.partition_id == -1 {
        m.hash_id
    } else if let Some(k) = m.key.as_deref().filter(|k| !k.is_empty()) {
        i64::from(java_hash(k))
    } else {
        rand::random::<i64>()
    };
    (index.unsigned_abs() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99_162_322);
        // wraps: "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        // surrogate pair counted as two units: 0xD83D * 31 + 0xDE00
        assert_eq!(java_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn index_is_non_negative_for_every_input() {
        let m = |p: i32, h: i64, k: Option<&str>| Message {
            partition_id: p,
            hash_id: h,
            key: k.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(choose_index(&m(5, 0, None), 3), 2);
        assert_eq!(choose_index(&m(-1, -7, None), 3), 1);
        assert_eq!(
            choose_index(&m(-1, i64::MIN, None), 3),
            (i64::MIN.unsigned_abs() % 3) as usize
        );
        assert_eq!(
            choose_index(&m(-2, 0, Some("polygenelubricants")), 3),
            (2_147_483_648u64 % 3) as usize
        );
        for _ in 0..100 {
            assert!(choose_index(&m(-5, 0, None), 3) < 3);
        }
        assert_eq!(choose_index(&m(7, 0, None), 1), 0);
    }
}
