//! The key-value engines under the store (delay.md §8.7): redb 4 with our redo log (default,
//! `redb.rs`) and sled 0.34 (the design's engine, `sled.rs`).
//!
//! The store's logic (`store/`) is written once against `Kv`: six named trees, point reads
//! and writes, bounded range scans, one multi-tree transaction per group of mutations, and a
//! flush that makes everything written so far durable on the device. Each engine maps that
//! onto its own API in its own file; engine errors leave this module wrapped in `EngineError`,
//! so nothing above it names an engine. fjall 3 was a third engine until issue 17: it could
//! not always reopen its database after an ext4 abort (docs/DECISIONS.md), and a directory it
//! wrote is refused at open (`EngineKind::detect`).

use std::path::Path;

use crate::error::{EngineError, StoreError};
use crate::record::Corrupt;

mod probe;
mod redb;
mod redo;
mod sled;

/// The trees of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeId {
    /// Pending records by id.
    Records = 0,
    /// Time index: big-endian due ms ‖ id.
    Due = 1,
    /// Final states by id.
    Done = 2,
    /// Trim index of `done`.
    DoneByTime = 3,
    /// Dead letters: id ‖ 0 ‖ occurrence.
    Dead = 4,
    /// Counters and markers.
    Meta = 5,
}

/// On-disk names of the trees, in `TreeId` order.
const TREE_NAMES: [&str; 6] = ["records", "due", "done", "done_by_time", "dead", "meta"];

/// Which engine holds a store; `scheduler.storeEngine` names it in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// sled 0.34.7: the design's engine and the default until redb was measured; stores it
    /// wrote keep it.
    Sled,
    /// redb 4 (copy-on-write B-trees in one file) with our redo log: each group is committed to
    /// redb without a sync and logged, `flush` syncs the log. The default (docs/DECISIONS.md,
    /// "Delay store engine").
    #[default]
    Redb,
}

impl EngineKind {
    /// Parses an engine name (`redb`, `sled`, any case); anything else (`fjall` included) is
    /// `None`. carrera.yaml reads the name through serde instead.
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sled" => Some(EngineKind::Sled),
            "redb" => Some(EngineKind::Redb),
            _ => None,
        }
    }

    /// Its name in settings and logs.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
        }
    }

    /// The engine of an existing store in `path`, if the directory holds one; a store written
    /// by fjall (removed in issue 17) is refused.
    pub(crate) fn detect(path: &Path) -> Result<Option<EngineKind>, StoreError> {
        Ok(
            if path.join("conf").is_file() && path.join("db").is_file() {
                Some(EngineKind::Sled)
            } else if path.join("keyspaces").is_dir() {
                return Err(StoreError::Fjall(path.to_path_buf()));
            } else if path.join(redb::REDB_FILE).is_file() {
                Some(EngineKind::Redb)
            } else {
                None
            },
        )
    }
}

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// A failure inside a transaction body.
#[derive(Debug)]
pub(crate) enum TxFail {
    /// A stored value did not decode: abort.
    Corrupt(Corrupt),
    /// A conflict with a concurrent writer: the engine runs the body again (sled only).
    Conflict,
    /// The engine failed.
    Engine(EngineError),
}

impl From<Corrupt> for TxFail {
    fn from(c: Corrupt) -> Self {
        TxFail::Corrupt(c)
    }
}

/// How an aborted transaction answers.
impl From<TxFail> for StoreError {
    fn from(fail: TxFail) -> Self {
        match fail {
            TxFail::Corrupt(c) => StoreError::Corrupt(c),
            TxFail::Engine(e) => StoreError::Engine(e),
            // Retried inside sled's transaction; never reaches the caller.
            TxFail::Conflict => StoreError::Corrupt(Corrupt),
        }
    }
}

/// Reads and writes inside one transaction; reads see the transaction's own writes.
pub(crate) trait TxOps {
    /// Reads a key.
    fn get(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail>;
    /// Writes a key.
    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail>;
    /// Deletes a key.
    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail>;
}

/// A transaction body: may run more than once (sled retries on conflict), so it keeps its
/// result itself.
pub(crate) type TxBody<'a> = &'a dyn Fn(&mut dyn TxOps) -> Result<(), TxFail>;

/// One open database of some engine.
pub(crate) trait Kv: Send + Sync {
    /// Runs `body` in one atomic multi-tree transaction.
    fn transact(&self, body: TxBody<'_>) -> Result<(), StoreError>;
    /// Reads a key outside a transaction.
    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads several keys of one tree at one point in time (one read transaction where the
    /// engine has them).
    fn get_many(&self, t: TreeId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(t, k)).collect()
    }
    /// Writes a key outside a transaction.
    fn insert(&self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), StoreError>;
    /// Deletes a key outside a transaction; returns the old value.
    fn remove(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits entries with `from <= key < end` (no end: to the last key) in order, until `visit`
    /// answers false.
    fn scan(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Entries with `from <= key < end` (no end: to the last key), at most `limit`, in order.
    fn range(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.scan(t, from, end, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                out.len() < limit
            })?;
        }
        Ok(out)
    }
    /// Number of entries of a tree (walks it where the engine keeps no count).
    fn len(&self, t: TreeId) -> Result<usize, StoreError>;
    /// Makes everything written so far durable on the device.
    fn flush(&self) -> Result<(), StoreError>;
}

/// Opens (or creates) a database of `kind` in `path`.
pub(crate) fn open(
    kind: EngineKind,
    path: &Path,
    cache_bytes: u64,
) -> Result<Box<dyn Kv>, StoreError> {
    Ok(match kind {
        EngineKind::Sled => Box::new(sled::SledKv::open(path, cache_bytes)?),
        EngineKind::Redb => Box::new(redb::RedbKv::open(path, cache_bytes)?),
    })
}
