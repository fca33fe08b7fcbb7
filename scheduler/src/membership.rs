//! The wheel-membership protocol: which ids are in memory, and how an id moves between the
//! store, the wheel, the fire tasks and the committer. The loader (`loader.rs`), the drive loop
//! and fire tasks (`fire.rs`) and the reopen (`upkeep.rs`) follow it.
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
use std::sync::{Mutex, MutexGuard};

use crate::wheel::Wheel;

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
    /// When the drive loop wakes up next, epoch ms: only an entry due before it needs to wake
    /// the loop early.
    pub(crate) wake_at_ms: i64,
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
            wake_at_ms: 0,
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
