//! uniqDelayMsgId parsing (scheduler `DelayId::parse`) and what the cancel path does with an id
//! (`canonical_of`, src/delay/mod.rs), plus uuid normalisation of src/delay/id.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pproxy::delay::id::{normalize_uuid, seq_for};
use scheduler::DelayId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(d) = DelayId::parse(s.trim()) {
        // Printing and parsing again is the identity on parsed ids.
        assert_eq!(DelayId::parse(&d.to_string()).as_ref(), Some(&d));
        if let Some(c) = d.canonical() {
            assert_eq!(c.timed, 0);
            assert_eq!(DelayId::canonical_of(&d.to_string()), c.to_string());
        }
    }
    let _ = DelayId::canonical_of(s.trim());
    let u = normalize_uuid(Some(s));
    if !s.is_empty() {
        assert_eq!(u.len(), 36);
        assert_eq!(normalize_uuid(Some(s)), u, "deterministic");
    }
    let n = (data.len() as i64 % 64) - 8;
    let seq = seq_for(s, n);
    assert!((0..n.max(1)).contains(&seq));
});
