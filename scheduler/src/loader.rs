//! The loader and the wheel-membership protocol: which ids are in memory, and how an id moves
//! between the store, the wheel, the fire tasks and the committer.
//!
//! # The protocol
//!
//! Every pending id has exactly one `due` entry in the store, keyed `due ms ‖ id`. In memory it
//! is in one of four states:
//!
//! 1. **Store only**: its key is at or above `cursor` and not covered by a scan in progress.
//!    The loader (`load`) reads it when the near window reaches it.
//! 2. **Loaded**: in the wheel. Every key below `cursor` is loaded, in flight or completing;
//!    so is every key below `scan_end` while a scan is running (keys committed during a scan
//!    may be missed by it, so `schedule_if_loaded` puts them in the wheel itself). When the
//!    wheel is full the latest entry is evicted back to state 1 and `cursor` moves back to it.
//! 3. **In flight**: the drive loop took it from the wheel (`Wheel::poll`) and put it in
//!    `inflight` before spawning its fire task; a cancel now only marks it (`cancelled`), and
//!    the task drops it before the sink is called.
//! 4. **Completing**: the sink answered and the completion waits for the committer; the id
//!    stays in `inflight` until the reply, so neither the loader nor `schedule_if_loaded` puts
//!    it back in the wheel meanwhile. The reply removes it from `inflight` and, when it is due
//!    again (retry, next loop occurrence), `schedule_if_loaded` returns it to state 2 or 1.
//!
//! So an id is never in the wheel and in `inflight` at once (asserted where either is
//! entered), the loader skips ids in flight, and the cursor only moves back for an eviction
//! or a reopen. After a reopen (`upkeep::recover`) the wheel is emptied, `cursor` reset and
//! `generation` bumped, so a scan begun on the old database is discarded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::facade::{blocking, Inner};
use crate::store::due_key;
use crate::wheel::{Wheel, MAX_SPAN};

/// A fire in flight.
#[derive(Default)]
pub(crate) struct InFlight {
    /// Cancelled before the sink was called: the fire task drops it (guarantee 4).
    pub(crate) cancelled: bool,
}

/// The in-memory side of the protocol above, behind one lock.
pub(crate) struct State {
    pub(crate) wheel: Wheel<String>,
    pub(crate) inflight: HashMap<String, InFlight>,
    /// Every `due` key below this cursor is loaded (wheel, in flight or being completed).
    pub(crate) cursor: Vec<u8>,
    /// End of the loader's scan in progress: keys committed meanwhile below it may have been
    /// missed by the scan, so they go straight into the wheel.
    pub(crate) scan_end: Option<Vec<u8>>,
    /// Bumped when the store is reopened: a scan that started before belongs to the old
    /// database and is discarded.
    pub(crate) generation: u64,
}

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
        drop(st);
        self.wake.notify_one();
    }
}

/// Loads `due` entries up to `now + nearWindowMs` into the wheel.
pub(crate) async fn load(inner: &Arc<Inner>, now: i64) {
    let horizon = now
        .saturating_add(inner.cfg.near_window_ms)
        .min(now + MAX_SPAN as i64 - 1);
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

/// Locks the state. A panic while holding the lock leaves consistent data (every update is one
/// statement).
pub(crate) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// An empty wheel at `now`, nothing loaded.
    pub(crate) fn new(now: i64) -> State {
        State {
            wheel: Wheel::new(now.max(0) as u64),
            inflight: HashMap::new(),
            cursor: Vec::new(),
            scan_end: None,
            generation: 0,
        }
    }

    /// Forgets what was loaded from a database that was just reopened: the reopened store is
    /// the truth (the wheel may describe writes that never became durable). Fires in flight
    /// stay in `inflight` and end as usual.
    pub(crate) fn reload(&mut self, now: i64) {
        self.wheel = Wheel::new(now.max(0) as u64);
        self.cursor = Vec::new();
        self.generation += 1;
    }
}
