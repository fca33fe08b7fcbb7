//! The embedded Kafka-protocol cluster (librdkafka mock cluster), owned by one thread.
//!
//! The mock cluster handle is not `Send`, and creating a topic blocks briefly, so a dedicated
//! thread owns it and serves topic creation requests over a channel.

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Mutex};

use rdkafka::mocking::MockCluster;
use tokio::sync::oneshot;

enum Command {
    CreateTopic(String, oneshot::Sender<()>),
}

/// A cloneable handle to the embedded cluster.
#[derive(Clone)]
pub struct EmbeddedHandle {
    tx: mpsc::Sender<Command>,
    created: Arc<Mutex<HashSet<String>>>,
    bootstrap: Arc<str>,
}

impl EmbeddedHandle {
    /// Starts the mock cluster with `brokers` brokers; topics get `partitions` partitions.
    pub fn start(brokers: i32, partitions: i32) -> Result<EmbeddedHandle, String> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers.max(1)) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Lives until every handle is dropped (process exit).
                while let Ok(Command::CreateTopic(t, done)) = rx.recv() {
                    if let Err(e) = cluster.create_topic(&t, partitions.max(1), 1) {
                        tracing::warn!(topic = %t, error = %e, "embedded topic creation failed");
                    }
                    let _ = done.send(());
                }
            })
            .map_err(|e| e.to_string())?;
        let bootstrap = ready_rx.recv().map_err(|e| e.to_string())??;
        Ok(EmbeddedHandle {
            tx,
            created: Arc::new(Mutex::new(HashSet::new())),
            bootstrap: bootstrap.into(),
        })
    }

    /// The bootstrap address any Kafka client can use.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates the topic once, with the configured partition count.
    pub async fn ensure_topic(&self, topic: &str) {
        let first = self
            .created
            .lock()
            .map(|mut c| c.insert(topic.to_string()))
            .unwrap_or(false);
        if !first {
            return;
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self
            .tx
            .send(Command::CreateTopic(topic.to_string(), done_tx))
            .is_ok()
        {
            let _ = done_rx.await;
        }
    }
}
