//! Publish queue lists per topic, refreshed from the name server, and queue choice
//! (forwarding.md §4.2, §7.1).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rocketmq_model::common::message::message_queue::MessageQueue;
use tokio::time::Instant;

use crate::writer::partition_for;

/// One topic's publish queue list, in the Java client's order.
pub struct TopicQueues {
    /// The queues.
    pub list: Vec<MessageQueue>,
    fetched: Instant,
    stale: AtomicBool,
    refreshing: AtomicBool,
}

impl TopicQueues {
    /// A fresh list.
    pub fn new(list: Vec<MessageQueue>) -> TopicQueues {
        TopicQueues {
            list,
            fetched: Instant::now(),
            stale: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        }
    }

    /// Whether the list must be fetched again before use (after a route error).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Whether a background refresh is due; true for exactly one caller until `done_refresh`.
    pub fn claim_refresh(&self, max_age: Duration) -> bool {
        self.fetched.elapsed() >= max_age && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Ends a failed background refresh so a later send tries again.
    pub fn done_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

/// Route cache of one cluster plus broker fault marks.
#[derive(Default)]
pub struct Routes {
    topics: RwLock<HashMap<String, Arc<TopicQueues>>>,
    faults: Mutex<HashMap<String, Instant>>,
}

impl Routes {
    /// The cached list of `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<Arc<TopicQueues>> {
        self.topics.read().ok()?.get(topic).cloned()
    }

    /// Stores a fetched list.
    pub fn put(&self, topic: &str, list: Vec<MessageQueue>) -> Arc<TopicQueues> {
        let q = Arc::new(TopicQueues::new(list));
        if let Ok(mut t) = self.topics.write() {
            t.insert(topic.to_string(), q.clone());
        }
        q
    }

    /// Forces a fetch before the next send of `topic` (after NO_PERMISSION, TOPIC_NOT_EXIST or a
    /// connection failure).
    pub fn invalidate(&self, topic: &str) {
        if let Some(q) = self.get(topic) {
            q.stale.store(true, Ordering::Release);
        }
    }

    /// Marks `broker` as failed for `backoff`.
    pub fn mark_fault(&self, broker: &str, backoff: Duration) {
        if let Ok(mut f) = self.faults.lock() {
            f.insert(broker.to_string(), Instant::now() + backoff);
        }
    }

    fn faulty(&self, broker: &str) -> bool {
        self.faults
            .lock()
            .ok()
            .and_then(|f| f.get(broker).copied())
            .is_some_and(|until| until > Instant::now())
    }

    /// The queue for one attempt (forwarding.md §4.2, §7.1).
    ///
    /// Explicit and hash messages always get the same index on the current list. Random
    /// messages avoid recently failed brokers on their first attempt and, unless the topic is
    /// `strongOrder`, move to another broker on a retry.
    pub fn pick(
        &self,
        q: &TopicQueues,
        partition_id: i32,
        hash_id: i64,
        strong_order: bool,
        previous: Option<&MessageQueue>,
    ) -> Option<MessageQueue> {
        let n = q.list.len();
        if n == 0 {
            return None;
        }
        if partition_id >= -1 {
            return Some(q.list[partition_for(partition_id, hash_id, n as u32) as usize].clone());
        }
        if let Some(prev) = previous {
            if strong_order {
                return Some(prev.clone());
            }
            let others: Vec<&MessageQueue> = q
                .list
                .iter()
                .filter(|m| m.broker_name() != prev.broker_name())
                .collect();
            if !others.is_empty() {
                return Some(others[rand::random_range(0..others.len())].clone());
            }
            return Some(q.list[rand::random_range(0..n)].clone());
        }
        let healthy: Vec<&MessageQueue> = q
            .list
            .iter()
            .filter(|m| !self.faulty(m.broker_name()))
            .collect();
        if healthy.is_empty() {
            return Some(q.list[rand::random_range(0..n)].clone());
        }
        Some(healthy[rand::random_range(0..healthy.len())].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> TopicQueues {
        let mut l = Vec::new();
        for b in ["broker-a", "broker-b"] {
            for i in 0..4 {
                l.push(MessageQueue::from_parts("t", b, i));
            }
        }
        TopicQueues::new(l)
    }

    #[test]
    fn explicit_and_hash_messages_use_the_spec_index() {
        let r = Routes::default();
        let q = queues();
        let m = r.pick(&q, 13, 0, false, None).unwrap();
        assert_eq!((m.broker_name().as_str(), m.queue_id()), ("broker-b", 1));
        let m = r.pick(&q, -1, -3, false, None).unwrap();
        assert_eq!((m.broker_name().as_str(), m.queue_id()), ("broker-a", 3));
        let prev = MessageQueue::from_parts("t", "broker-a", 3);
        let m = r.pick(&q, -1, -3, false, Some(&prev)).unwrap();
        assert_eq!(m, prev, "hash retries keep the queue");
    }

    #[test]
    fn random_retries_move_broker_unless_strong_order() {
        let r = Routes::default();
        let q = queues();
        let prev = MessageQueue::from_parts("t", "broker-a", 2);
        for _ in 0..50 {
            let m = r.pick(&q, -2, 0, false, Some(&prev)).unwrap();
            assert_eq!(m.broker_name().as_str(), "broker-b");
            assert_eq!(r.pick(&q, -2, 0, true, Some(&prev)).unwrap(), prev);
        }
        r.mark_fault("broker-b", Duration::from_secs(3));
        for _ in 0..50 {
            let m = r.pick(&q, -2, 0, false, None).unwrap();
            assert_eq!(
                m.broker_name().as_str(),
                "broker-a",
                "faulty broker avoided"
            );
        }
    }
}
