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
        if known_offset_hang(&d) {
            // Known hang (docs/RELIABILITY.md "Fuzzing"), skipped so that runs report new
            // findings; tests/fuzz_regressions.rs keeps it, ignored until record.rs is fixed.
            return;
        }
        if let Some(c) = d.canonical() {
            assert_eq!(c.timed, 0);
            assert_eq!(DelayId::canonical_of(&d.to_string()), c.to_string());
        }
    }
    if !known_offset_hang_str(s.trim()) {
        let _ = DelayId::canonical_of(s.trim());
    }
    let u = normalize_uuid(Some(s));
    if !s.is_empty() {
        assert_eq!(u.len(), 36);
        assert_eq!(normalize_uuid(Some(s)), u, "deterministic");
    }
    let n = (data.len() as i64 % 64) - 8;
    let seq = seq_for(s, n);
    assert!((0..n.max(1)).contains(&seq));
});

/// Exponential ids with interval 0 or 1 and a large occurrence index: `offset_sec` loops
/// O(timed^2) (scheduler/src/record.rs).
fn known_offset_hang(d: &DelayId) -> bool {
    d.dtype == 4 && d.interval <= 1 && d.timed > 10_000
}

fn known_offset_hang_str(s: &str) -> bool {
    DelayId::parse(s).is_some_and(|d| known_offset_hang(&d))
}
