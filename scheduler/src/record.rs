//! Delay records, their ids, occurrence arithmetic (delay.md §4, §5.2) and binary encoding.

use std::fmt;

/// Timestamps at or above this are epoch milliseconds, below it epoch seconds.
pub const MS_THRESHOLD: i64 = 1_000_000_000_000;
/// Cap of an exponential gap, seconds.
pub const MAX_EXP_GAP_SEC: i64 = 86_400;

/// One-shot, fixed-interval loop, exponential loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// dmsgtype 2.
    Once = 2,
    /// dmsgtype 3.
    Fixed = 3,
    /// dmsgtype 4.
    Exponential = 4,
}

impl Kind {
    /// From the wire's dmsgtype.
    pub fn from_type(t: i64) -> Option<Kind> {
        match t {
            2 => Some(Kind::Once),
            3 => Some(Kind::Fixed),
            4 => Some(Kind::Exponential),
            _ => None,
        }
    }
}

/// The fields of a uniqDelayMsgId (delay.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DelayId {
    /// Fire time of this occurrence, in the unit the client used.
    pub timestamp: i64,
    /// dmsgtype.
    pub dtype: i64,
    /// Expire, in the unit the client used.
    pub expire: i64,
    /// Loop times.
    pub times: i64,
    /// Occurrence index.
    pub timed: i64,
    /// Interval (seconds) or exponent base.
    pub interval: i64,
    /// Inner topic seq.
    pub seq: i64,
    /// Lower-case uuid.
    pub uuid: String,
}

impl fmt::Display for DelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-{}-{}-{}-{}-{}",
            self.timestamp,
            self.dtype,
            self.expire,
            self.times,
            self.timed,
            self.interval,
            self.seq,
            self.uuid
        )
    }
}

impl DelayId {
    /// Parses an id (delay.md §4.3); `None` when it is not one.
    pub fn parse(id: &str) -> Option<DelayId> {
        let parts: Vec<&str> = id.split('-').collect();
        if parts.len() != 12 {
            return None;
        }
        let mut nums = [0i64; 7];
        for (n, p) in nums.iter_mut().zip(&parts[..7]) {
            if p.is_empty() || p.len() > 19 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *n = p.parse().ok()?;
        }
        let ok = parts[7..]
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !ok {
            return None;
        }
        Some(DelayId {
            timestamp: nums[0],
            dtype: nums[1],
            expire: nums[2],
            times: nums[3],
            timed: nums[4],
            interval: nums[5],
            seq: nums[6],
            uuid: parts[7..].join("-").to_ascii_lowercase(),
        })
    }

    /// The add id an id given by a client stands for: any occurrence id maps to its add id; an
    /// unparseable or impossible id stands for itself (it can only be unknown).
    pub fn canonical_of(raw: &str) -> String {
        DelayId::parse(raw)
            .and_then(|d| d.canonical())
            .map_or_else(|| raw.to_string(), |d| d.to_string())
    }

    /// Maps an occurrence id back to its add id (timed 0); `None` when no add can have it.
    pub fn canonical(&self) -> Option<DelayId> {
        let kind = Kind::from_type(self.dtype)?;
        let ms_unit = self.timestamp >= MS_THRESHOLD;
        let k = self.timed;
        if k < 0 || (kind == Kind::Once && k != 0) || (kind != Kind::Once && k >= self.times) {
            return None;
        }
        let unit = if ms_unit { 1000 } else { 1 };
        let ts0 = self
            .timestamp
            .checked_sub(offset_sec(kind, self.interval, k as u64).checked_mul(unit)?)?;
        if ts0 < 1_000_000_000 {
            return None;
        }
        Some(DelayId {
            timestamp: ts0,
            timed: 0,
            ..self.clone()
        })
    }
}

/// Client timestamp to epoch ms.
pub fn to_ms(v: i64) -> i64 {
    if v >= MS_THRESHOLD {
        v
    } else {
        v.saturating_mul(1000)
    }
}

/// Gap before occurrence `k` (k >= 1), in seconds.
pub fn gap_sec(kind: Kind, interval: i64, k: u64) -> i64 {
    match kind {
        Kind::Once => 0,
        Kind::Fixed => interval,
        // Intervals -1, 0 and 1 never reach the cap: closed forms instead of k multiplications.
        Kind::Exponential if (-1..=1).contains(&interval) => match (interval, k) {
            (_, 0) => 1,
            (0, _) => 0,
            (1, _) => 1,
            _ => {
                if k.is_multiple_of(2) {
                    1
                } else {
                    -1
                }
            }
        },
        Kind::Exponential => {
            let mut g: i64 = 1;
            for _ in 0..k {
                g = match g.checked_mul(interval) {
                    Some(v) if v <= MAX_EXP_GAP_SEC => v,
                    _ => return MAX_EXP_GAP_SEC,
                };
            }
            g
        }
    }
}

/// Sum of the gaps up to occurrence `k`, in seconds (saturating).
pub fn offset_sec(kind: Kind, interval: i64, k: u64) -> i64 {
    match kind {
        Kind::Once => 0,
        Kind::Fixed => interval.saturating_mul(k as i64),
        // Closed forms where the gaps never reach the cap (found while writing the fuzz targets: the loop below is
        // O(k^2) for these, and k comes from a client's id).
        Kind::Exponential if interval == 0 => 0,
        Kind::Exponential if interval == 1 => i64::try_from(k).unwrap_or(i64::MAX),
        Kind::Exponential if interval == -1 => -((k % 2) as i64),
        Kind::Exponential => {
            let mut total: i64 = 0;
            for i in 1..=k {
                let g = gap_sec(kind, interval, i);
                total = total.saturating_add(g);
                if g == MAX_EXP_GAP_SEC {
                    // Every later gap is the cap too.
                    return total.saturating_add(MAX_EXP_GAP_SEC.saturating_mul((k - i) as i64));
                }
            }
            total
        }
    }
}

/// A stored delay message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Delay topic.
    pub topic: String,
    /// Tags of the fired message.
    pub tags: Option<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
    /// Body, bytes unchanged.
    pub body: Vec<u8>,
    /// Add id fields (timed 0).
    pub id: DelayId,
    /// Index of the next occurrence to fire.
    pub next_index: u64,
    /// Due time of the next occurrence, epoch ms.
    pub next_due_ms: i64,
    /// Failed attempts of the current occurrence.
    pub attempts: u32,
    /// First failure of the current occurrence, epoch ms (0 = none).
    pub first_failure_ms: i64,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Principal that added the record (empty = none).
    pub owner: String,
    /// Overdue occurrences fired in a row by catch-up `all`.
    pub caught_up: u32,
}

impl Record {
    /// The kind of the record.
    pub fn kind(&self) -> Kind {
        Kind::from_type(self.id.dtype).unwrap_or(Kind::Once)
    }

    /// Whether timestamps are in ms.
    pub fn ms_unit(&self) -> bool {
        self.id.timestamp >= MS_THRESHOLD
    }

    /// Expire as ms.
    pub fn expire_ms(&self) -> i64 {
        to_ms(self.id.expire)
    }

    /// Due time of occurrence `k`, epoch ms.
    pub fn due_ms(&self, k: u64) -> i64 {
        let off = offset_sec(self.kind(), self.id.interval, k).saturating_mul(1000);
        to_ms(self.id.timestamp).saturating_add(off)
    }

    /// Whether occurrence `k` exists (k < times and due <= expire; one-shot: only 0).
    pub fn has_occurrence(&self, k: u64) -> bool {
        match self.kind() {
            Kind::Once => k == 0,
            _ => (k as i64) < self.id.times && self.due_ms(k) <= self.expire_ms(),
        }
    }

    /// The id of occurrence `k` (the fired message's key).
    pub fn occurrence_id(&self, k: u64) -> String {
        let unit = if self.ms_unit() { 1000 } else { 1 };
        let ts = self
            .id
            .timestamp
            .saturating_add(offset_sec(self.kind(), self.id.interval, k).saturating_mul(unit));
        DelayId {
            timestamp: ts,
            timed: k as i64,
            ..self.id.clone()
        }
        .to_string()
    }

    /// The next occurrence after `k` completes (delay.md §5.3). An occurrence overdue by more
    /// than `late_tolerance_ms` at `now_ms` is skipped under `skip`; under `all` it fires, up to
    /// `max_catch_up` in a row (counted in `caught_up`), and the rest is skipped.
    /// Returns (index, skipped count, new `caught_up`).
    pub fn next_after(
        &self,
        k: u64,
        now_ms: i64,
        late_tolerance_ms: i64,
        skip: bool,
        max_catch_up: u32,
    ) -> Option<(u64, u64, u32)> {
        let next = k + 1;
        if !self.has_occurrence(next) {
            return None;
        }
        let overdue = |n: u64| self.due_ms(n) < now_ms - late_tolerance_ms;
        if !overdue(next) {
            return Some((next, 0, 0));
        }
        if !skip && self.caught_up < max_catch_up {
            return Some((next, 0, self.caught_up + 1));
        }
        let mut next = next;
        let mut skipped = 0;
        while overdue(next) {
            if self.kind() == Kind::Fixed && self.id.interval > 0 {
                // Jump arithmetically to the first occurrence due within tolerance.
                let base = to_ms(self.id.timestamp);
                let step = self.id.interval.saturating_mul(1000);
                let target = (now_ms - late_tolerance_ms - base + step - 1) / step;
                let target = (target.max(next as i64 + 1)) as u64;
                skipped += target - next;
                next = target;
            } else {
                next += 1;
                skipped += 1;
            }
            if !self.has_occurrence(next) {
                return None;
            }
        }
        Some((next, skipped, 0))
    }
}

/// Encoding errors of stored values.
#[derive(Debug, thiserror::Error)]
#[error("corrupt stored record")]
pub struct Corrupt;

const FORMAT: u8 = 1;

/// Writer of the stored binary layout (also the cluster journal's): big-endian integers,
/// byte strings prefixed by a big-endian u32 length.
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// Big-endian i64.
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
    }
}

/// Reader of what `Enc` writes; every read fails with `Corrupt` past the end.
pub struct Dec<'a>(pub &'a [u8]);

impl Dec<'_> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&[u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    /// Big-endian i64.
    pub fn i64(&mut self) -> Result<i64, Corrupt> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_be_bytes(a))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<Vec<u8>, Corrupt> {
        let s = self.take(4)?;
        let n = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
        Ok(self.take(n)?.to_vec())
    }
    /// Length-prefixed UTF-8.
    pub fn string(&mut self) -> Result<String, Corrupt> {
        String::from_utf8(self.bytes()?).map_err(|_| Corrupt)
    }
}

impl Record {
    /// Versioned binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(128 + self.body.len()));
        e.u8(FORMAT);
        e.bytes(self.topic.as_bytes());
        match &self.tags {
            Some(t) => {
                e.u8(1);
                e.bytes(t.as_bytes());
            }
            None => e.u8(0),
        }
        e.i64(self.properties.len() as i64);
        for (k, v) in &self.properties {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.bytes(&self.body);
        for v in [
            self.id.timestamp,
            self.id.dtype,
            self.id.expire,
            self.id.times,
            self.id.interval,
            self.id.seq,
        ] {
            e.i64(v);
        }
        e.bytes(self.id.uuid.as_bytes());
        e.i64(self.next_index as i64);
        e.i64(self.next_due_ms);
        e.i64(i64::from(self.attempts));
        e.i64(self.first_failure_ms);
        e.i64(self.created_ms);
        e.bytes(self.owner.as_bytes());
        e.i64(i64::from(self.caught_up));
        e.0
    }

    /// Decodes `encode`'s output.
    pub fn decode(b: &[u8]) -> Result<Record, Corrupt> {
        let mut d = Dec(b);
        if d.u8()? != FORMAT {
            return Err(Corrupt);
        }
        let topic = d.string()?;
        let tags = if d.u8()? == 1 {
            Some(d.string()?)
        } else {
            None
        };
        let n = d.i64()?;
        if !(0..=1_000_000).contains(&n) {
            return Err(Corrupt);
        }
        let mut properties = Vec::with_capacity(n as usize);
        for _ in 0..n {
            properties.push((d.string()?, d.string()?));
        }
        let body = d.bytes()?;
        let (timestamp, dtype, expire, times, interval, seq) =
            (d.i64()?, d.i64()?, d.i64()?, d.i64()?, d.i64()?, d.i64()?);
        let uuid = d.string()?;
        Ok(Record {
            topic,
            tags,
            properties,
            body,
            id: DelayId {
                timestamp,
                dtype,
                expire,
                times,
                timed: 0,
                interval,
                seq,
                uuid,
            },
            next_index: d.i64()? as u64,
            next_due_ms: d.i64()?,
            attempts: d.i64()? as u32,
            first_failure_ms: d.i64()?,
            created_ms: d.i64()?,
            owner: d.string()?,
            caught_up: d.i64()? as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dtype: i64, ts: i64, interval: i64, times: i64, expire: i64) -> Record {
        Record {
            topic: "t".into(),
            tags: Some("a".into()),
            properties: vec![("k".into(), "v".into())],
            body: vec![0, 255],
            id: DelayId {
                timestamp: ts,
                dtype,
                expire,
                times,
                timed: 0,
                interval,
                seq: 0,
                uuid: "14f22520-ad72-11e7-91be-6ee54da579e3".into(),
            },
            next_index: 0,
            next_due_ms: to_ms(ts),
            attempts: 0,
            first_failure_ms: 0,
            created_ms: 1,
            owner: String::new(),
            caught_up: 0,
        }
    }

    #[test]
    fn encoding_round_trips() {
        let r = rec(3, 1_700_000_000, 5, 3, 1_800_000_000);
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(&r.encode()[..10]).is_err());
    }

    #[test]
    fn fixed_loop_occurrences() {
        let r = rec(3, 1_700_000_000, 10, 3, 1_700_000_025);
        assert_eq!(r.due_ms(2), 1_700_000_020_000);
        assert!(r.has_occurrence(2));
        assert!(!r.has_occurrence(3), "times");
        let r2 = rec(3, 1_700_000_000, 10, 9, 1_700_000_015);
        assert!(!r2.has_occurrence(2), "expire inclusive bound");
        assert_eq!(
            r.occurrence_id(2),
            "1700000020-3-1700000025-3-2-10-0-14f22520-ad72-11e7-91be-6ee54da579e3"
        );
        let occ = DelayId::parse(&r.occurrence_id(2)).unwrap();
        assert_eq!(occ.canonical().unwrap().to_string(), r.occurrence_id(0));
    }

    #[test]
    fn exponential_gaps_cap_at_one_day() {
        assert_eq!(gap_sec(Kind::Exponential, 300, 1), 300);
        assert_eq!(gap_sec(Kind::Exponential, 300, 2), 86_400);
        assert_eq!(gap_sec(Kind::Exponential, 2, 3), 8);
        assert_eq!(offset_sec(Kind::Exponential, 2, 3), 2 + 4 + 8);
        assert_eq!(offset_sec(Kind::Exponential, 300, 4), 300 + 3 * 86_400);
        assert_eq!(gap_sec(Kind::Exponential, i64::MAX, 5), 86_400);
        let r = rec(4, 1_700_000_000_000, 2, 5, 1_800_000_000_000);
        assert_eq!(r.due_ms(3), 1_700_000_000_000 + 14_000);
        assert_eq!(r.occurrence_id(1).split('-').next(), Some("1700000002000"));
    }

    #[test]
    fn canonical_rejects_impossible_indexes() {
        let once =
            DelayId::parse("1507609164-2-1507781964-0-1-0-0-14f22520-ad72-11e7-91be-6ee54da579e3")
                .unwrap();
        assert!(once.canonical().is_none());
        let lp =
            DelayId::parse("1507609164-3-1507781964-2-2-10-0-14f22520-ad72-11e7-91be-6ee54da579e3")
                .unwrap();
        assert!(lp.canonical().is_none(), "k >= times");
    }

    #[test]
    fn catch_up_skips_to_the_future() {
        let r = rec(3, 1_700_000_000, 10, 100, 1_800_000_000);
        // occurrence 0 completed 95 s late: 1..9 are overdue, the next within tolerance is 10
        let now = 1_700_000_095_000;
        assert_eq!(r.next_after(0, now, 1000, true, 100), Some((10, 9, 0)));
        assert_eq!(
            r.next_after(0, now, 1000, false, 100),
            Some((1, 0, 1)),
            "all: fire the overdue one"
        );
        let mut tired = r.clone();
        tired.caught_up = 3;
        assert_eq!(
            tired.next_after(3, now, 1000, false, 3),
            Some((10, 6, 0)),
            "all: bound reached, skip the rest"
        );
        let e = rec(4, 1_700_000_000, 2, 100, 1_800_000_000);
        let (k, skipped, _) = e.next_after(0, 1_700_000_100_000, 1000, true, 100).unwrap();
        assert!(e.due_ms(k) >= 1_700_000_099_000 && skipped == k - 1);
        let short = rec(3, 1_700_000_000, 10, 3, 1_800_000_000);
        assert_eq!(
            short.next_after(0, 1_700_000_095_000, 1000, true, 100),
            None,
            "loop ended"
        );
    }

    #[test]
    fn unit_interval_closed_forms_match_the_definition() {
        for interval in -3..=3i64 {
            for k in 0..40u64 {
                let mut g = 1i64;
                let mut total = 0i64;
                for i in 1..=k {
                    g = (1..=i).fold(1i64, |acc, _| {
                        acc.checked_mul(interval)
                            .filter(|v| *v <= MAX_EXP_GAP_SEC)
                            .unwrap_or(MAX_EXP_GAP_SEC)
                    });
                    if g == MAX_EXP_GAP_SEC {
                        total = total.saturating_add(MAX_EXP_GAP_SEC * (k - i + 1) as i64);
                        break;
                    }
                    total += g;
                }
                let _ = g;
                assert_eq!(
                    offset_sec(Kind::Exponential, interval, k),
                    total,
                    "{interval} {k}"
                );
            }
        }
        let t = std::time::Instant::now();
        assert_eq!(
            offset_sec(Kind::Exponential, 1, 999_999_999_998),
            999_999_999_998
        );
        assert_eq!(offset_sec(Kind::Exponential, 0, 999_999_999_998), 0);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
