//! Recovery from rocketmq-client-rust's connection circuit breaker.
//!
//! After five failed connects to a broker address the library refuses every connection to it
//! for 30 s, and for another 30 s whenever its single probe fails. A broker that restarts in
//! that window stays unusable for up to 30 s after it is back: in CI, no send succeeded in the
//! 15 s after the restarted broker was registered and answering. The breaker is private to the
//! library's client instance, so pproxy watches for it: when a producer instance has seen only
//! connection failures for [`PROBE_AFTER`], pproxy connects to the broker itself, and if the
//! broker accepts, the instance is replaced by a fresh one (a new client instance, a new
//! breaker). docs/RELIABILITY.md, "RocketMQ broker restart".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an instance sees only connection failures before pproxy probes the broker.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Least time between two probes of one instance.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bound of one probe's connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    /// When the current run of connection failures began.
    since: Option<Instant>,
    last_probe: Option<Instant>,
    probing: bool,
}

/// The run of connection failures of one producer instance.
#[derive(Default)]
pub struct Streak {
    /// Whether a run is open: lets the success path skip the lock.
    failing: AtomicBool,
    state: Mutex<State>,
}

impl Streak {
    /// A request through the instance succeeded: the run ends.
    pub fn success(&self) {
        if self.failing.load(Ordering::Relaxed) {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.since = None;
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    /// A request through the instance failed to connect.
    pub fn failure(&self, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.since.get_or_insert(now);
        self.failing.store(true, Ordering::Relaxed);
    }

    /// Whether a probe is due at `now`; true for one caller until [`Streak::probe_done`].
    pub fn claim_probe(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = !s.probing
            && s.since.is_some_and(|t| now >= t + PROBE_AFTER)
            && s.last_probe.is_none_or(|t| now >= t + PROBE_EVERY);
        if due {
            s.probing = true;
            s.last_probe = Some(now);
        }
        due
    }

    /// Ends a claimed probe.
    pub fn probe_done(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).probing = false;
    }
}

/// Whether `addr` accepts a TCP connection within [`PROBE_TIMEOUT`].
pub async fn accepts(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_due_once_per_interval_after_a_second_of_failures() {
        let s = Streak::default();
        let t0 = Instant::now();
        assert!(!s.claim_probe(t0), "no failure, no probe");
        s.failure(t0);
        s.failure(t0 + Duration::from_millis(500));
        assert!(!s.claim_probe(t0 + Duration::from_millis(900)));
        let t1 = t0 + PROBE_AFTER;
        assert!(s.claim_probe(t1));
        assert!(!s.claim_probe(t1 + PROBE_EVERY), "one probe at a time");
        s.probe_done();
        assert!(
            !s.claim_probe(t1 + PROBE_EVERY / 2),
            "at most one per interval"
        );
        assert!(s.claim_probe(t1 + PROBE_EVERY));
        s.probe_done();
        // A success ends the run: a new one starts the wait again.
        s.success();
        let t2 = t1 + 10 * PROBE_EVERY;
        assert!(!s.claim_probe(t2));
        s.failure(t2);
        assert!(!s.claim_probe(t2 + PROBE_AFTER / 2));
        assert!(s.claim_probe(t2 + PROBE_AFTER));
    }
}
