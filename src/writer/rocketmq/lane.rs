//! Auto-batch lanes, "batch while busy" (forwarding.md §8).
//!
//! A lane is one (topic, queue) with at most one request in flight. A message that finds its
//! lane idle leaves at once as a single send, so a lone synchronous client never waits for a
//! batch window; messages that arrive while the lane is busy leave together when it completes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Sender;
use crate::lifecycle::Tasks;
use crate::metrics::ClusterMetrics;
use crate::writer::{BatchPolicy, SendError};

/// One waiting message and where its outcome goes.
struct Pending {
    msg: Message,
    body_len: usize,
    deadline: Instant,
    done: oneshot::Sender<Result<(), SendError>>,
}

#[derive(Default)]
struct State {
    busy: bool,
    waiting: VecDeque<Pending>,
    /// Bounds of the most recent submission: `autoBatch.*` reloads apply to new dispatches.
    policy: Option<BatchPolicy>,
    /// Sender of the most recent submission: a replaced producer instance (instances.rs) is
    /// not used again by a lane that stays busy.
    sender: Option<Arc<dyn Sender>>,
}

/// Dispatch counts of a cluster's lanes, for `/status`, and its series for `/metrics`.
#[derive(Debug)]
pub struct LaneStats {
    /// The cluster's broker series (batch sizes).
    pub metrics: ClusterMetrics,
    /// Requests sent by lanes.
    pub requests: AtomicU64,
    /// Of those, batch requests (two messages or more).
    pub batch_requests: AtomicU64,
    /// Messages carried by batch requests.
    pub batched_messages: AtomicU64,
}

impl LaneStats {
    /// Zero counts, observing into `metrics`.
    pub fn new(metrics: ClusterMetrics) -> LaneStats {
        LaneStats {
            metrics,
            requests: AtomicU64::new(0),
            batch_requests: AtomicU64::new(0),
            batched_messages: AtomicU64::new(0),
        }
    }
}

/// One lane.
pub struct Lane {
    mq: MessageQueue,
    state: Mutex<State>,
    stats: Arc<LaneStats>,
    /// The lane's dispatcher runs as a task of these (it ends once nothing is waiting).
    tasks: Tasks,
}

impl Lane {
    /// An idle lane for `mq`.
    pub fn new(mq: MessageQueue, stats: Arc<LaneStats>, tasks: Tasks) -> Arc<Lane> {
        Arc::new(Lane {
            mq,
            state: Mutex::new(State::default()),
            stats,
            tasks,
        })
    }

    /// Whether a request is in flight.
    pub fn is_busy(&self) -> bool {
        self.state.lock().map(|s| s.busy).unwrap_or(false)
    }

    /// Sends `msg` through the lane; resolves with the outcome of the request that carried it.
    pub async fn submit(
        self: &Arc<Self>,
        sender: Arc<dyn Sender>,
        msg: Message,
        body_len: usize,
        policy: BatchPolicy,
        deadline: Instant,
    ) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        let p = Pending {
            msg,
            body_len,
            deadline,
            done: tx,
        };
        let first = {
            let mut s = self
                .state
                .lock()
                .map_err(|_| SendError::Failed("lane lock poisoned".into()))?;
            s.policy = Some(policy);
            if s.busy {
                s.sender = Some(sender);
                s.waiting.push_back(p);
                None
            } else {
                s.busy = true;
                Some((p, sender))
            }
        };
        if let Some((p, sender)) = first {
            let lane = self.clone();
            self.tasks
                .spawn(async move { lane.drive(sender, vec![p]).await });
        }
        rx.await
            .unwrap_or_else(|_| Err(SendError::Failed("lane dropped the message".into())))
    }

    /// Dispatches until the lane has nothing waiting, then marks it idle.
    async fn drive(self: Arc<Self>, mut sender: Arc<dyn Sender>, mut group: Vec<Pending>) {
        loop {
            // A member whose caller already gave up (answered 12) is not sent.
            group.retain(|p| !p.done.is_closed());
            if !group.is_empty() {
                let deadline = group
                    .iter()
                    .map(|p| p.deadline)
                    .max()
                    .unwrap_or_else(Instant::now);
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                let bytes = group.iter().map(|p| p.body_len).sum();
                self.stats.metrics.batch(group.len(), bytes);
                if group.len() > 1 {
                    self.stats.batch_requests.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .batched_messages
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                }
                let r = if group.len() == 1 {
                    let p = &group[0];
                    sender
                        .send_one(p.msg.clone(), self.mq.clone(), deadline)
                        .await
                } else {
                    let msgs = group.iter().map(|p| p.msg.clone()).collect();
                    sender.send_batch(msgs, self.mq.clone(), deadline).await
                };
                for p in group.drain(..) {
                    let _ = p.done.send(r.clone());
                }
            }
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            if s.waiting.is_empty() {
                s.busy = false;
                s.sender = None;
                return;
            }
            if let Some(newer) = s.sender.take() {
                sender = newer;
            }
            let policy = s.policy.unwrap_or(BatchPolicy {
                max_bytes: usize::MAX,
                threshold: 0,
                max_messages: 1,
            });
            let mut total = 0usize;
            while let Some(p) = s.waiting.front() {
                let fits = group.is_empty()
                    || (group.len() < policy.max_messages && total + p.body_len < policy.max_bytes);
                if !fits {
                    break;
                }
                total += p.body_len;
                if let Some(p) = s.waiting.pop_front() {
                    group.push(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::rocketmq::SendFuture;
    use std::time::Duration;

    /// Records the size of every request; each takes 20 ms.
    #[derive(Default)]
    struct Fake {
        sizes: Mutex<Vec<usize>>,
    }

    impl Sender for Fake {
        fn send_one(&self, _: Message, _: MessageQueue, _: Instant) -> SendFuture<'_> {
            Box::pin(async move {
                self.sizes.lock().unwrap().push(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            })
        }
        fn send_batch(&self, m: Vec<Message>, _: MessageQueue, _: Instant) -> SendFuture<'_> {
            Box::pin(async move {
                self.sizes.lock().unwrap().push(m.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            })
        }
    }

    fn msg() -> Message {
        Message::builder()
            .topic("t")
            .body_slice(b"x")
            .build_unchecked()
    }

    #[tokio::test]
    async fn idle_lane_sends_at_once_and_busy_lane_packs_within_bounds() {
        let fake = Arc::new(Fake::default());
        let lane = Lane::new(
            MessageQueue::from_parts("t", "b", 0),
            Arc::new(LaneStats::new(ClusterMetrics::unregistered())),
            Tasks::new(),
        );
        let policy = BatchPolicy {
            max_bytes: 4096,
            threshold: 1024,
            max_messages: 4,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        // A lone message: one single send, no waiting for company.
        let t = Instant::now();
        lane.submit(fake.clone(), msg(), 1, policy, deadline)
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_millis(200));
        assert_eq!(*fake.sizes.lock().unwrap(), vec![1]);
        // Ten at once: the first goes alone, the rest in batches of at most 4.
        let all = (0..10).map(|_| {
            let (lane, fake) = (lane.clone(), fake.clone());
            tokio::spawn(async move { lane.submit(fake, msg(), 1, policy, deadline).await })
        });
        for r in futures::future::join_all(all).await {
            r.unwrap().unwrap();
        }
        let sizes = fake.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 11);
        assert!(sizes.iter().all(|s| *s <= 4), "{sizes:?}");
        assert!(
            sizes.len() <= 5,
            "ten concurrent messages were packed: {sizes:?}"
        );
        assert!(!lane.is_busy());
    }
}
