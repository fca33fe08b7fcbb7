//! The loader: reads `due` entries of the near window from the store into the wheel, and puts
//! ids committed behind it into the wheel itself (the protocol is in `membership.rs`).

use std::sync::Arc;

use crate::inner::{blocking, Inner};
use crate::membership::lock;
use crate::store::due_key;
use crate::wheel::MAX_SPAN;

impl Inner {
    /// Puts a just-committed due time into the wheel when the loader has passed it.
    pub(crate) fn schedule_if_loaded(&self, due_ms: i64, id: String) {
        let key = due_key(due_ms, &id);
        let mut st = lock(&self.state);
        let covered = key < st.cursor || st.scan_end.as_ref().is_some_and(|end| key < *end);
        if !covered || st.inflight.contains_key(&id) {
            return;
        }
        if st.wheel.len() >= self.cfg.max_loaded {
            // Full: evict the latest entry (it stays in the store) and move the cursor back to it.
            match st.wheel.pop_latest() {
                Some((d, evicted)) if (d as i64, &evicted) > (due_ms, &id) => {
                    st.cursor = st.cursor.clone().min(due_key(d as i64, &evicted));
                }
                Some((d, evicted)) => {
                    st.wheel.insert(d, evicted);
                    // Never raise the cursor: a key covered only by a scan in progress lies at
                    // or above it, and raising it would skip what the scan has not loaded.
                    if key < st.cursor {
                        st.cursor = key;
                    }
                    return;
                }
                None => {}
            }
        }
        debug_assert!(
            !st.inflight.contains_key(&id),
            "{id} in the wheel and in flight"
        );
        st.wheel.insert(due_ms.max(0) as u64, id);
        // A wake-up per add would also cost the drive loop a pass (and a store read); one due
        // after the loop's next wake-up is polled then.
        let early = due_ms < st.wake_at_ms;
        drop(st);
        if early {
            self.wake.notify_one();
        }
    }
}

/// Loads `due` entries up to `now + nearWindowMs` into the wheel, once what is loaded reaches
/// less than 7/8 of that window ahead: a store read per batch of the window, not per pass of
/// the drive loop (entries committed inside the loaded part go to the wheel on commit).
pub(crate) async fn load(inner: &Arc<Inner>, now: i64) {
    let horizon = now
        .saturating_add(inner.cfg.near_window_ms)
        .min(now + MAX_SPAN as i64 - 1);
    let refill = horizon - inner.cfg.near_window_ms / 8;
    if lock(&inner.state).cursor >= due_key(refill, "") {
        return;
    }
    loop {
        let end = due_key(horizon, "");
        let (from, room, generation) = {
            let mut st = lock(&inner.state);
            let room = inner.cfg.max_loaded.saturating_sub(st.wheel.len());
            if room == 0 || st.cursor >= end {
                return;
            }
            st.scan_end = Some(end.clone());
            (
                st.cursor.clone(),
                room.min(inner.cfg.fire_batch_size.max(1) * 4),
                st.generation,
            )
        };
        let store = inner.store.clone();
        let (from2, end2) = (from.clone(), end.clone());
        let batch = blocking(move || store.db()?.due_after(&from2, &end2, room)).await;
        let mut st = lock(&inner.state);
        st.scan_end = None;
        let Ok(batch) = batch else {
            tracing::warn!("delay loader: storage read failed");
            return;
        };
        if st.cursor != from || st.generation != generation {
            continue; // an eviction moved the cursor, or the store was reopened: rescan
        }
        for (due, id) in &batch {
            if st.inflight.contains_key(id) {
                continue;
            }
            // Adds committed during the scan may have filled the room measured before it: stop
            // at the first entry that no longer fits; the cursor stays there.
            if st.wheel.len() >= inner.cfg.max_loaded && !st.wheel.contains(id) {
                st.cursor = due_key(*due, id);
                debug_assert!(st.cursor >= from, "the loader moved the cursor back");
                return;
            }
            debug_assert!(
                !st.inflight.contains_key(id),
                "{id} in the wheel and in flight"
            );
            st.wheel.insert((*due).max(0) as u64, id.clone());
        }
        if batch.len() < room {
            st.cursor = due_key(horizon, "");
            return;
        }
        if let Some((due, id)) = batch.last() {
            let mut next = due_key(*due, id);
            next.push(0);
            debug_assert!(next > from, "the loader moved the cursor back");
            st.cursor = next;
        }
    }
}
