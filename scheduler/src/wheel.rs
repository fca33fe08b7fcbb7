//! A hierarchical timing wheel with 1 ms resolution and O(1) insert and removal by id.
//!
//! Six levels of 64 slots (after tokio's timer wheel): level `l` slots span `64^l` ms, so the
//! wheel covers 64^6 ms (about 2 179 days) ahead of its current time. An entry sits at the
//! level of the highest bit in which its due time differs from the wheel's time; when a slot of a
//! higher level comes due its entries cascade to lower levels.

use std::collections::HashMap;
use std::hash::Hash;

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// Farthest distance the wheel can hold, in ms.
pub const MAX_SPAN: u64 = 1 << (SLOT_BITS as u64 * LEVELS as u64);

struct Entry<K> {
    due: u64,
    key: K,
    level: usize,
    slot: usize,
    pos: usize,
}

/// Timing wheel of keys `K` due at millisecond times.
pub struct Wheel<K: Clone + Eq + Hash> {
    now: u64,
    slots: Vec<Vec<usize>>,
    occupied: [u64; LEVELS],
    entries: Vec<Option<Entry<K>>>,
    free: Vec<usize>,
    index: HashMap<K, usize>,
    ready: Vec<(u64, K)>,
}

fn level_for(now: u64, due: u64) -> usize {
    let masked = (now ^ due) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

fn slot_for(due: u64, level: usize) -> usize {
    ((due >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1)
}

impl<K: Clone + Eq + Hash> Wheel<K> {
    /// An empty wheel whose current time is `now` ms.
    pub fn new(now: u64) -> Self {
        Wheel {
            now,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            entries: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            ready: Vec::new(),
        }
    }

    /// Number of keys held (including due ones not yet taken).
    pub fn len(&self) -> usize {
        self.index.len() + self.ready.len()
    }

    /// Whether the wheel holds nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held in a slot (not yet expired).
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts `key` due at `due` ms; replaces an earlier insertion of the same key.
    /// Due times at or before the wheel's time become ready at once; times beyond the span
    /// are clamped to the span's end (the caller keeps such entries out of the wheel).
    pub fn insert(&mut self, due: u64, key: K) {
        self.remove(&key);
        if due <= self.now {
            self.ready.push((due, key));
            return;
        }
        let due_c = due.min(self.now + MAX_SPAN - 1);
        let level = level_for(self.now, due_c);
        let slot = slot_for(due_c, level);
        // The clamp keeps the entry within one turn of the top level.
        debug_assert!(due_c > self.now && due_c - self.now < MAX_SPAN);
        // Below the top level the entry shares the wheel time's digits above its level, so its
        // slot comes due no later than it does (never at a higher level than needed).
        debug_assert!(
            level == LEVELS - 1
                || due_c >> ((level as u32 + 1) * SLOT_BITS)
                    == self.now >> ((level as u32 + 1) * SLOT_BITS),
            "entry due {due_c} at level {level} of a wheel at {}",
            self.now
        );
        let idx = level * SLOTS + slot;
        let e = Entry {
            due,
            key: key.clone(),
            level,
            slot,
            pos: self.slots[idx].len(),
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(e);
                i
            }
            None => {
                self.entries.push(Some(e));
                self.entries.len() - 1
            }
        };
        self.slots[idx].push(id);
        self.occupied[level] |= 1 << slot;
        self.index.insert(key, id);
    }

    /// Removes `key`; returns its due time if it was held in a slot.
    pub fn remove(&mut self, key: &K) -> Option<u64> {
        let id = self.index.remove(key)?;
        let e = self.entries[id].take()?;
        self.free.push(id);
        let idx = e.level * SLOTS + e.slot;
        let slot = &mut self.slots[idx];
        slot.swap_remove(e.pos);
        if let Some(&moved) = slot.get(e.pos) {
            if let Some(m) = self.entries[moved].as_mut() {
                m.pos = e.pos;
            }
        }
        if slot.is_empty() {
            self.occupied[e.level] &= !(1 << e.slot);
        }
        Some(e.due)
    }

    /// The earliest time at which something may become ready, if anything is held.
    pub fn next_expiration(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(self.now);
        }
        (0..LEVELS).find_map(|l| self.next_slot(l).map(|(_, deadline)| deadline))
    }

    /// Next occupied slot of `level` at or after the wheel's time, with the slot's start time.
    fn next_slot(&self, level: usize) -> Option<(usize, u64)> {
        let occ = self.occupied[level];
        if occ == 0 {
            return None;
        }
        let shift = level as u32 * SLOT_BITS;
        let now_slot = slot_for(self.now, level);
        let rotated = occ.rotate_right(now_slot as u32);
        let zeros = rotated.trailing_zeros() as usize;
        let slot = (now_slot + zeros) % SLOTS;
        let level_range = 1u64 << (shift + SLOT_BITS);
        let level_start = self.now & !(level_range - 1);
        let mut deadline = level_start + ((slot as u64) << shift);
        if deadline < self.now && level > 0 {
            deadline = deadline.max(self.now);
        }
        if slot < now_slot {
            deadline += level_range;
        }
        Some((slot, deadline.max(self.now)))
    }

    /// Advances the wheel to `now` and returns every key due at or before it, earliest first.
    pub fn poll(&mut self, now: u64) -> Vec<(u64, K)> {
        let mut out = std::mem::take(&mut self.ready);
        while let Some((level, slot, deadline)) =
            (0..LEVELS).find_map(|l| self.next_slot(l).map(|(s, d)| (l, s, d)))
        {
            if deadline > now {
                break;
            }
            // Cascade order: the lowest occupied level comes due first; a higher level's next
            // slot never comes due before it.
            debug_assert!(
                (level + 1..LEVELS).all(|h| self.next_slot(h).is_none_or(|(_, d)| d >= deadline)),
                "level {level} due at {deadline} after a higher level"
            );
            self.now = self.now.max(deadline);
            let idx = level * SLOTS + slot;
            let ids = std::mem::take(&mut self.slots[idx]);
            self.occupied[level] &= !(1 << slot);
            for id in ids {
                let Some(e) = self.entries[id].take() else {
                    continue;
                };
                self.free.push(id);
                self.index.remove(&e.key);
                if e.due <= now {
                    out.push((e.due, e.key));
                } else {
                    // A cascaded entry moves to a lower level (the top level may keep an entry
                    // clamped to the span).
                    debug_assert!(
                        level == LEVELS - 1
                            || level_for(self.now, e.due.min(self.now + MAX_SPAN - 1)) < level,
                        "entry due {} cascaded from level {level} to no lower level",
                        e.due
                    );
                    self.insert(e.due, e.key);
                }
            }
        }
        self.now = self.now.max(now);
        out.sort_by_key(|(d, _)| *d);
        out
    }

    /// Removes and returns the entry with the latest due time (eviction when full).
    ///
    /// An entry of a higher level is always later than every entry of a lower level (it shares
    /// the wheel time's digits above its level and exceeds it at its level), so only the
    /// farthest occupied slot of the highest occupied level is searched, not every entry.
    pub fn pop_latest(&mut self) -> Option<(u64, K)> {
        let level = (0..LEVELS).rev().find(|l| self.occupied[*l] != 0)?;
        let now_slot = slot_for(self.now, level);
        // Farthest slot from the wheel's time in rotation order (the top level may wrap).
        let slot = (0..SLOTS)
            .filter(|s| self.occupied[level] & (1 << s) != 0)
            .max_by_key(|s| (s + SLOTS - now_slot) % SLOTS)?;
        let id = self.slots[level * SLOTS + slot]
            .iter()
            .copied()
            .max_by_key(|id| self.entries[*id].as_ref().map_or(0, |e| e.due))?;
        let key = self.entries[id].as_ref()?.key.clone();
        // No earlier expiration at a higher level: every lower level comes due no later.
        debug_assert!(
            self.entries[id].as_ref().is_some_and(
                |e| (0..level).all(|l| self.next_slot(l).is_none_or(|(_, d)| d <= e.due))
            ),
            "an entry of level {level} is earlier than a lower level's"
        );
        let due = self.remove(&key)?;
        Some((due, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_each_key_once_at_or_after_its_time() {
        let mut w = Wheel::new(1_000);
        let dues = [
            1_001u64,
            1_063,
            1_064,
            1_065,
            5_000,
            70_000,
            1_000_000,
            3_000_000_000,
        ];
        for (i, d) in dues.iter().enumerate() {
            w.insert(*d, i);
        }
        assert_eq!(w.len(), dues.len());
        let mut fired = Vec::new();
        let mut t = 1_000u64;
        while fired.len() < dues.len() {
            let next = w.next_expiration().expect("pending");
            assert!(next >= t, "next expiration never goes back");
            t = next.max(t + 1);
            for (due, k) in w.poll(t) {
                assert!(due <= t, "never early");
                assert_eq!(due, dues[k]);
                fired.push(k);
            }
        }
        let mut sorted = fired.clone();
        sorted.sort();
        assert_eq!(sorted, (0..dues.len()).collect::<Vec<_>>());
        assert!(w.is_empty());
    }

    #[test]
    fn exact_millisecond_and_removal() {
        let mut w = Wheel::new(0);
        for d in 1..=300u64 {
            w.insert(d * 7, d);
        }
        assert_eq!(w.remove(&10), Some(70));
        assert_eq!(w.remove(&10), None);
        for t in 0..=2_100u64 {
            for (due, k) in w.poll(t) {
                assert_eq!(due, t, "fired exactly at its millisecond");
                assert_ne!(k, 10);
            }
        }
        assert!(w.is_empty());
    }

    #[test]
    fn past_due_and_reinsert_and_eviction() {
        let mut w = Wheel::new(100);
        w.insert(50, "late");
        w.insert(200, "a");
        w.insert(300, "a"); // replaces
        w.insert(900, "b");
        assert_eq!(w.poll(100), vec![(50, "late")]);
        assert_eq!(w.pop_latest(), Some((900, "b")));
        assert!(w.poll(299).is_empty());
        assert_eq!(w.poll(300), vec![(300, "a")]);
    }

    #[test]
    fn pop_latest_is_the_latest_after_polls() {
        let mut w = Wheel::new(0);
        let mut x: u64 = 99;
        let mut held = std::collections::HashMap::new();
        let mut t = 0;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = t + 1 + (x >> 20) % 5_000_000;
            w.insert(d, i);
            held.insert(i, d);
            if i % 100 == 0 {
                t += (x >> 40) % 20_000;
                for (_, k) in w.poll(t) {
                    held.remove(&k);
                }
            }
            if i % 7 == 0 {
                let (due, k) = w.pop_latest().expect("not empty");
                let max = held.values().copied().max().unwrap();
                assert_eq!(due, max, "evicts the latest");
                assert_eq!(held.remove(&k), Some(due));
            }
        }
    }

    #[test]
    fn big_jumps_cascade_correctly() {
        let mut w = Wheel::new(0);
        let mut x: u64 = 12345;
        let mut dues = Vec::new();
        for i in 0..5_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = 1 + (x >> 20) % 10_000_000;
            dues.push(d);
            w.insert(d, i);
        }
        let mut count = 0;
        let mut t = 0;
        while !w.is_empty() {
            t += 1 + (t / 3);
            for (due, k) in w.poll(t) {
                assert!(due <= t);
                assert_eq!(dues[k as usize], due);
                count += 1;
            }
        }
        assert_eq!(count, 5_000);
    }
}
