//! The retry policy of forwarding.md §4.2: which failures are retried, when, and after what pause.

use std::time::Duration;

use tokio::time::Instant;

use super::SendError;
use crate::config::settings::ForwardingSettings;

/// The bounds of one request's retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (>= 1).
    pub max_attempts: u32,
    /// Base backoff before attempt 2.
    pub backoff: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// A retry needs at least this much time left.
    pub min_window: Duration,
}

impl RetryPolicy {
    /// The policy of the `forwarding` settings.
    pub fn from_settings(f: &ForwardingSettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: f.max_attempts.max(1),
            backoff: f.retry_backoff_ms,
            backoff_max: f.retry_backoff_max_ms,
            min_window: f.min_retry_window_ms,
        }
    }

    /// When attempt `next` (2, 3, ...) may start after `err`, or `None` for no retry.
    ///
    /// Only fast retriable failures are retried: a slow attempt ends in `Timeout`, and a second
    /// send of a possibly stored message would be a duplicate.
    pub fn next_attempt(&self, err: &SendError, next: u32, deadline: Instant) -> Option<Instant> {
        if !matches!(err, SendError::Retriable(_)) || next > self.max_attempts {
            return None;
        }
        let now = Instant::now();
        if deadline.saturating_duration_since(now) < self.min_window {
            return None;
        }
        let exp = self
            .backoff
            .saturating_mul(1u32 << (next.saturating_sub(2)).min(16));
        let base = exp.min(self.backoff_max);
        // ±50 % jitter spreads retries of many requests that failed together.
        let jitter = rand::random::<f64>() + 0.5;
        let at = now + base.mul_f64(jitter);
        (at < deadline).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(5),
            backoff_max: Duration::from_millis(100),
            min_window: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn only_fast_retriable_failures_are_retried_within_the_attempt_budget() {
        let p = policy();
        let far = Instant::now() + Duration::from_secs(3);
        let retriable = SendError::Retriable("busy".into());
        let at = p.next_attempt(&retriable, 2, far).expect("second attempt");
        let wait = at - Instant::now();
        assert!(wait <= Duration::from_millis(8), "5 ms ± 50 %: {wait:?}");
        assert!(p.next_attempt(&retriable, 3, far).is_some());
        assert!(p.next_attempt(&retriable, 4, far).is_none(), "3 attempts");
        assert!(p.next_attempt(&SendError::Timeout, 2, far).is_none());
        assert!(p
            .next_attempt(&SendError::Failed("x".into()), 2, far)
            .is_none());
        let near = Instant::now() + Duration::from_millis(3);
        assert!(p.next_attempt(&retriable, 2, near).is_none(), "window");
    }
}
