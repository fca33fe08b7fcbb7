//! Rate limiting (forwarding.md §10): per-topic and per-node GCRA buckets on `governor`, each
//! split into a normal and a warn portion by `tpsWarningRatio`, at most about one second of
//! burst, and one delayed retry of a refused request.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::admit::TopicRoute;

/// One bucket; `None` refuses everything (a rate of 0).
pub struct Bucket(Option<DefaultDirectRateLimiter>);

impl Bucket {
    /// A bucket of `rate` permits per second with a burst of `max(1, floor(rate))`.
    /// (`+ 1e-9` before `floor`: a split like 10 × (1 − 0.8) is 1.9999999999999996.)
    pub fn new(rate: f64) -> Bucket {
        if rate.is_nan() || rate <= 0.0 {
            return Bucket(None);
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        let burst =
            NonZeroU32::new(((rate + 1e-9).floor() as u64).clamp(1, u64::from(u32::MAX)) as u32)
                .unwrap_or(NonZeroU32::MIN);
        Bucket(Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst))))
    }

    /// Takes `n` permits if they are all available now.
    pub fn take(&self, n: u32) -> bool {
        let (Some(l), Some(n)) = (&self.0, NonZeroU32::new(n)) else {
            return n == 0;
        };
        matches!(l.check_n(n), Ok(Ok(())))
    }
}

/// A normal/warn pair.
pub struct Pair {
    normal: Bucket,
    warn: Bucket,
    /// The warning threshold (limit × ratio), for the log line.
    pub threshold: f64,
    burst: u32,
}

impl Pair {
    /// Splits `limit` by `ratio` (clamped to (0, 1]).
    pub fn new(limit: f64, ratio: f64) -> Pair {
        let r = if ratio.is_nan() || ratio <= 0.0 {
            1.0
        } else {
            ratio.min(1.0)
        };
        let normal = limit * r;
        let warn = limit * (1.0 - r);
        let cap = |q: f64| {
            if q > 0.0 {
                ((q + 1e-9).floor() as u64).clamp(1, u64::from(u32::MAX)) as u32
            } else {
                0
            }
        };
        Pair {
            normal: Bucket::new(normal),
            warn: Bucket::new(warn),
            threshold: normal,
            burst: cap(normal).max(cap(warn)),
        }
    }
}

/// How one admission went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted from the normal buckets.
    Admitted,
    /// Admitted, at least one level from its warn bucket.
    Warned {
        /// The topic level used its warn bucket.
        topic: bool,
        /// The node level used its warn bucket.
        node: bool,
    },
    /// Refused at the topic level.
    RefusedTopic,
    /// Refused at the node level.
    RefusedNode,
    /// More permits than any bucket can ever hold: refused without retry.
    TooLarge,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn admitted(self) -> bool {
        matches!(self, Decision::Admitted | Decision::Warned { .. })
    }
}

/// The buckets of one configuration generation.
pub struct Limiter {
    node: Pair,
    topics: HashMap<String, Pair>,
    ratio: f64,
    last_warn_log: Mutex<HashMap<String, std::time::Instant>>,
}

impl Limiter {
    /// Buckets for the node limit and each admitted topic.
    pub fn new(node_tps: i64, ratio: f64, topics: &[std::sync::Arc<TopicRoute>]) -> Limiter {
        Limiter {
            node: Pair::new(node_tps as f64, ratio),
            topics: topics
                .iter()
                .map(|t| (t.name.to_string(), Pair::new(t.max_tps as f64, ratio)))
                .collect(),
            ratio,
            last_warn_log: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, pair: &Pair, n: u32) -> Option<bool> {
        if pair.normal.take(n) {
            Some(false)
        } else if pair.warn.take(n) {
            Some(true)
        } else {
            None
        }
    }

    fn log_warn(&self, topic: &str, threshold: f64) {
        let now = std::time::Instant::now();
        let mut last = self.last_warn_log.lock().unwrap_or_else(|e| e.into_inner());
        let due = last
            .get(topic)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
        if due {
            last.insert(topic.to_string(), now);
            tracing::warn!("topic {topic} TPS is over warning threshold({threshold})");
        }
    }

    fn topic_pair<'a>(&'a self, topic: &str, fallback: &'a mut Option<Pair>) -> &'a Pair {
        match self.topics.get(topic) {
            Some(p) => p,
            // A topic admitted after the buckets were built: the unit default of 1024.
            None => fallback.insert(Pair::new(1024.0, self.ratio)),
        }
    }

    /// Admits `n` permits for `topic` (topic level first, then node level).
    pub fn admit(&self, topic: &str, n: u32) -> Decision {
        self.admit_many(&[(topic, n)])
    }

    /// Admits a request needing `n_t` permits for each listed topic and their sum at node level.
    pub fn admit_many(&self, wants: &[(&str, u32)]) -> Decision {
        let total: u32 = wants.iter().map(|(_, n)| *n).sum();
        let mut fallback = None;
        if total > self.node.burst
            || wants
                .iter()
                .any(|(t, n)| *n > self.topic_pair(t, &mut fallback).burst)
        {
            return Decision::TooLarge;
        }
        let mut topic_warn = false;
        for (t, n) in wants {
            let mut fallback = None;
            let pair = self.topic_pair(t, &mut fallback);
            match self.take(pair, *n) {
                Some(w) => {
                    if w {
                        self.log_warn(t, pair.threshold);
                    }
                    topic_warn |= w;
                }
                None => return Decision::RefusedTopic,
            }
        }
        // Topic permits already taken are not returned when the node refuses (as DDMQ).
        let node_warn = match self.take(&self.node, total) {
            Some(w) => w,
            None => return Decision::RefusedNode,
        };
        if topic_warn || node_warn {
            Decision::Warned {
                topic: topic_warn,
                node: node_warn,
            }
        } else {
            Decision::Admitted
        }
    }
}

/// The delayed-retry interval for a refused request with a `budget_ms` deadline budget and the
/// topic's `limiterFailureRetryInterval`; `None` means no retry.
pub fn retry_interval_ms(setting: i64, budget_ms: i64) -> Option<i64> {
    match setting {
        0 => None,
        s if s > 0 => Some(s),
        _ => {
            let t = budget_ms - 10;
            (t > 10).then(|| t.min(100))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_about_one_second() {
        let b = Bucket::new(10.0);
        let admitted = (0..50).filter(|_| b.take(1)).count();
        assert_eq!(admitted, 10, "burst = floor(rate)");
        let tiny = Bucket::new(0.5);
        assert!(tiny.take(1), "burst at least 1");
        assert!(!tiny.take(1));
        let zero = Bucket::new(0.0);
        assert!(!zero.take(1), "rate 0 refuses everything");
    }

    #[test]
    fn warn_portion_is_admitted_and_counted() {
        let routes = vec![std::sync::Arc::new(TopicRoute {
            name: "t".into(),
            clusters: vec!["c".into()],
            delay_topic: false,
            auto_batch: false,
            strong_order: false,
            size_limit: 10,
            max_tps: 10,
            limiter_failure_retry_interval: -1,
        })];
        let l = Limiter::new(1000, 0.8, &routes);
        let decisions: Vec<Decision> = (0..12).map(|_| l.admit("t", 1)).collect();
        assert_eq!(
            decisions
                .iter()
                .filter(|d| **d == Decision::Admitted)
                .count(),
            8
        );
        assert_eq!(
            decisions
                .iter()
                .filter(|d| matches!(d, Decision::Warned { topic: true, .. }))
                .count(),
            2
        );
        assert_eq!(
            decisions
                .iter()
                .filter(|d| **d == Decision::RefusedTopic)
                .count(),
            2
        );
        // Ratio 1: the warn bucket is empty (rate 0) and refuses.
        let l = Limiter::new(1000, 1.0, &routes);
        assert_eq!((0..12).filter(|_| l.admit("t", 1).admitted()).count(), 10);
        // Node level.
        let l = Limiter::new(3, 1.0, &routes);
        assert_eq!((0..5).filter(|_| l.admit("t", 1).admitted()).count(), 3);
        assert_eq!(l.admit("t", 1), Decision::RefusedNode);
        assert_eq!(l.admit("t", 50), Decision::TooLarge);
    }

    #[test]
    fn retry_interval_rules() {
        assert_eq!(retry_interval_ms(0, 50), None);
        assert_eq!(retry_interval_ms(30, 50), Some(30));
        assert_eq!(
            retry_interval_ms(-1, 50),
            Some(40),
            "SDK default 50 ms: retry after 40 ms"
        );
        assert_eq!(retry_interval_ms(-1, 10_000), Some(100));
        assert_eq!(retry_interval_ms(-1, 20), None);
        assert_eq!(
            retry_interval_ms(-7, 3000),
            Some(100),
            "other negatives read as -1"
        );
    }
}
