//! The key-value engines under the store (delay.md §8.7): sled 0.34, fjall 3 and redb 4.
//!
//! The store's logic (`store.rs`) is written once against `Kv`: six named trees, point reads
//! and writes, bounded range scans, one multi-tree transaction per group of mutations, and a
//! flush that makes everything written so far durable on the device. Each engine maps that
//! onto its own API here; nothing above this module names an engine.

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
    UnabortableTransactionError,
};

use crate::probe::JournalProbe;
use crate::record::Corrupt;
use crate::store::{Applied, StoreError};

/// The trees of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeId {
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

pub(crate) const TREE_NAMES: [&str; 6] = ["records", "due", "done", "done_by_time", "dead", "meta"];

/// Which engine holds a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// fjall 3 (LSM tree, journal fsynced on flush): faster and far smaller in memory, but it
    /// could not reopen its database after an ext4 abort (docs/DECISIONS.md, "Delay store
    /// engine"), so it is opt-in.
    Fjall,
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
    /// Parses a setting value (`fjall`, `sled`).
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fjall" => Some(EngineKind::Fjall),
            "sled" => Some(EngineKind::Sled),
            "redb" => Some(EngineKind::Redb),
            _ => None,
        }
    }

    /// Its name in settings and logs.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fjall => "fjall",
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
        }
    }

    /// The engine of an existing store in `path`, if the directory holds one.
    pub fn detect(path: &Path) -> Option<EngineKind> {
        if path.join("conf").is_file() && path.join("db").is_file() {
            Some(EngineKind::Sled)
        } else if path.join("keyspaces").is_dir() {
            Some(EngineKind::Fjall)
        } else if path.join(crate::redb_kv::REDB_FILE).is_file() {
            Some(EngineKind::Redb)
        } else {
            None
        }
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A failure inside a transaction body.
#[derive(Debug)]
pub enum TxFail {
    /// A stored value did not decode: abort.
    Corrupt(Corrupt),
    /// sled failed (a conflict is retried by sled).
    Sled(UnabortableTransactionError),
    /// fjall failed.
    Fjall(fjall::Error),
    /// redb failed.
    Redb(redb::Error),
}

impl From<Corrupt> for TxFail {
    fn from(c: Corrupt) -> Self {
        TxFail::Corrupt(c)
    }
}

/// How an aborted fjall or redb transaction answers (sled maps its own inside its retry loop).
impl From<TxFail> for StoreError {
    fn from(fail: TxFail) -> Self {
        match fail {
            TxFail::Corrupt(c) => StoreError::Corrupt(c),
            TxFail::Fjall(e) => StoreError::Fjall(e),
            TxFail::Redb(e) => StoreError::Redb(e),
            // Not produced outside a sled transaction.
            TxFail::Sled(_) => StoreError::Corrupt(Corrupt),
        }
    }
}

/// Reads and writes inside one transaction; reads see the transaction's own writes.
pub trait TxOps {
    /// Reads a key.
    fn get(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail>;
    /// Writes a key.
    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail>;
    /// Deletes a key.
    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail>;
}

/// A transaction body: may run more than once (sled retries on conflict).
pub type TxBody<'a> = &'a dyn Fn(&mut dyn TxOps) -> Result<Vec<Applied>, TxFail>;

/// One open database of some engine.
pub trait Kv: Send + Sync {
    /// Runs `body` in one atomic multi-tree transaction.
    fn transact(&self, body: TxBody<'_>) -> Result<Vec<Applied>, StoreError>;
    /// Reads a key outside a transaction.
    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
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
pub fn open(kind: EngineKind, path: &Path, cache_bytes: u64) -> Result<Box<dyn Kv>, StoreError> {
    Ok(match kind {
        EngineKind::Sled => Box::new(SledKv::open(path, cache_bytes)?),
        EngineKind::Fjall => Box::new(FjallKv::open(path, cache_bytes)?),
        EngineKind::Redb => Box::new(crate::redb_kv::RedbKv::open(path, cache_bytes)?),
    })
}

// ---------------------------------------------------------------------------------------------
// sled

/// sled 0.34.7: six trees of one `Db`.
struct SledKv {
    /// sled's data file, opened read-only: `flush` fsyncs it (see `SledKv::flush`).
    file: std::fs::File,
    /// Checked after every flush: sled appends, so its flushes commit metadata (`probe.rs`).
    probe: JournalProbe,
    /// The database and its trees; taken only by `drop`.
    open: Option<(sled::Db, [sled::Tree; 6])>,
}

/// Removes unfinished sled snapshot files (`snap.<lsn>.generating`) from the database directory.
///
/// sled 0.34.7 writes a snapshot when it opens a database: to `snap.<lsn>.generating`, then
/// synced and renamed to `snap.<lsn>`. When the write fails (a full disk: every reopen attempt
/// while the disk is still full) or the process dies before the rename, the `.generating` file
/// stays, and every later open picks it as the newest snapshot (the candidate filter still
/// skips only an older suffix, `.in___motion`) and fails with "Read corrupted data" — the
/// database could then not be opened again, not even by a restart (spacejam/sled#1527). Such a
/// file was never renamed into place, so sled never relied on it: without it sled recovers
/// from the previous complete snapshot and the log, exactly as if the write had not happened.
fn remove_unfinished_snapshots(path: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(sled::Error::Io(e).into()),
    };
    for entry in entries {
        let entry = entry.map_err(sled::Error::Io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(sled::Error::Io)?;
            tracing::warn!(
                file = %entry.path().display(),
                "delay store: removed an unfinished sled snapshot (a failed write or a crash \
                 while it was written)"
            );
        }
    }
    Ok(())
}

impl SledKv {
    fn open(path: &Path, cache_bytes: u64) -> Result<SledKv, StoreError> {
        remove_unfinished_snapshots(path)?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()?;
        let t = |i: usize| db.open_tree(TREE_NAMES[i]);
        let trees = [t(0)?, t(1)?, t(2)?, t(3)?, t(4)?, t(5)?];
        Ok(SledKv {
            file: std::fs::File::open(path.join("db")).map_err(sled::Error::Io)?,
            probe: JournalProbe::open(path)?,
            open: Some((db, trees)),
        })
    }

    /// The database and its trees (gone only while dropping).
    fn handles(&self) -> Result<&(sled::Db, [sled::Tree; 6]), StoreError> {
        self.open.as_ref().ok_or(StoreError::Unavailable)
    }

    fn tree(&self, t: TreeId) -> Result<&sled::Tree, StoreError> {
        Ok(&self.handles()?.1[t as usize])
    }
}

impl Drop for SledKv {
    /// sled 0.34.7 ends its close with `sync_all().unwrap()` unless it saw an I/O error itself.
    /// When only our fsync or the journal probe failed (the file system went read-only), that
    /// sync fails too and sled panics; the unwinding still closes its files, so the panic is
    /// caught here and the close counts as done (the store then reopens as after any I/O error).
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(open)));
            if closed.is_err() {
                tracing::warn!(
                    "delay store: sled panicked in its final sync while closing after an I/O \
                     error; its files are closed"
                );
            }
        }
    }
}

struct SledTx<'a> {
    trees: [&'a TransactionalTree; 6],
}

impl TxOps for SledTx<'_> {
    fn get(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail> {
        Ok(self.trees[t as usize]
            .get(k)
            .map_err(TxFail::Sled)?
            .map(|v| v.to_vec()))
    }

    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail> {
        self.trees[t as usize].insert(k, v).map_err(TxFail::Sled)?;
        Ok(())
    }

    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail> {
        self.trees[t as usize].remove(k).map_err(TxFail::Sled)?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn transact(&self, body: TxBody<'_>) -> Result<Vec<Applied>, StoreError> {
        let [a, b, c, d, e, f] = &self.handles()?.1;
        let r = (a, b, c, d, e, f).transaction(|(a, b, c, d, e, f)| {
            let mut ops = SledTx {
                trees: [a, b, c, d, e, f],
            };
            body(&mut ops).map_err(|fail| match fail {
                TxFail::Corrupt(c) => ConflictableTransactionError::Abort(c),
                TxFail::Sled(u) => u.into(),
                // Not produced by a sled transaction.
                TxFail::Fjall(_) | TxFail::Redb(_) => ConflictableTransactionError::Abort(Corrupt),
            })
        });
        match r {
            Ok(v) => Ok(v),
            Err(TransactionError::Abort(c)) => Err(StoreError::Corrupt(c)),
            Err(TransactionError::Storage(s)) => Err(StoreError::Sled(s)),
        }
    }

    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(t)?.get(k)?.map(|v| v.to_vec()))
    }

    fn insert(&self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.tree(t)?.insert(k, v)?;
        Ok(())
    }

    fn remove(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(t)?.remove(k)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let it = match end {
            Some(end) => self.tree(t)?.range(from.to_vec()..end.to_vec()),
            None => self.tree(t)?.range(from.to_vec()..),
        };
        for kv in it {
            let (k, v) = kv?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn len(&self, t: TreeId) -> Result<usize, StoreError> {
        Ok(self.tree(t)?.len())
    }

    /// sled's flush, then an `fsync` of its data file. sled 0.34 ends a flush with
    /// `sync_file_range` on Linux, which writes the data pages but commits neither the metadata
    /// of the blocks appended to its log (file size, extents) nor the device's write cache; its
    /// own `fsync` runs only every 500 ms in the background. A test that aborted ext4 under load
    /// (tests/disk_trouble.rs) lost adds and cancels answered 0 that way; the fsync (on any
    /// descriptor of the file) closes that window, and the journal probe catches an fsync that
    /// answered 0 although an abort cut its commit short (`probe.rs`).
    fn flush(&self) -> Result<(), StoreError> {
        self.handles()?.0.flush()?;
        self.file.sync_all().map_err(sled::Error::Io)?;
        self.probe.check()
    }
}

// ---------------------------------------------------------------------------------------------
// fjall

/// Memtable size of each keyspace. Smaller ones stalled writers more often (fjall halts writes
/// while flushes fall behind); larger ones cost memory (six keyspaces) and journal replay at a
/// restart. Chosen by the runs in docs/DECISIONS.md ("Delay store engine").
const FJALL_MEMTABLE: u64 = 32 << 20;
/// Bound of all journals; fjall flushes memtables to tables when it is reached, which bounds
/// the journal replayed at a restart.
const FJALL_JOURNALS: u64 = 64 << 20;

/// fjall 3: six keyspaces of one single-writer transactional database. Commits are written to
/// the journal (OS buffers) without a sync; `flush` fsyncs the journal (`PersistMode::SyncAll`).
struct FjallKv {
    db: fjall::SingleWriterTxDatabase,
    trees: [fjall::SingleWriterTxKeyspace; 6],
    /// Checked after every flush (`probe.rs`).
    probe: JournalProbe,
}

impl FjallKv {
    fn open(path: &Path, cache_bytes: u64) -> Result<FjallKv, StoreError> {
        let db = fjall::SingleWriterTxDatabase::builder(path)
            .cache_size(cache_bytes)
            .max_journaling_size(FJALL_JOURNALS)
            // Two background workers at most: the machine this runs on is often small.
            .worker_threads(
                std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .clamp(1, 2),
            )
            .open()?;
        let t = |i: usize| {
            db.keyspace(TREE_NAMES[i], || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(FJALL_MEMTABLE)
            })
        };
        let trees = [t(0)?, t(1)?, t(2)?, t(3)?, t(4)?, t(5)?];
        Ok(FjallKv {
            db,
            trees,
            probe: JournalProbe::open(path)?,
        })
    }

    fn tree(&self, t: TreeId) -> &fjall::SingleWriterTxKeyspace {
        &self.trees[t as usize]
    }
}

struct FjallTx<'a, 'tx> {
    tx: &'a mut fjall::SingleWriterWriteTx<'tx>,
    trees: &'a [fjall::SingleWriterTxKeyspace; 6],
}

impl TxOps for FjallTx<'_, '_> {
    fn get(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail> {
        use fjall::Readable;
        Ok(self
            .tx
            .get(&self.trees[t as usize], k)
            .map_err(TxFail::Fjall)?
            .map(|v| v.to_vec()))
    }

    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail> {
        self.tx.insert(&self.trees[t as usize], k, v);
        Ok(())
    }

    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail> {
        self.tx.remove(&self.trees[t as usize], k);
        Ok(())
    }
}

impl Kv for FjallKv {
    fn transact(&self, body: TxBody<'_>) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.db.write_tx();
        let out = body(&mut FjallTx {
            tx: &mut tx,
            trees: &self.trees,
        });
        match out {
            Ok(v) => {
                tx.commit()?;
                Ok(v)
            }
            Err(fail) => {
                tx.rollback();
                Err(fail.into())
            }
        }
    }

    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(t).get(k)?.map(|v| v.to_vec()))
    }

    fn insert(&self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.tree(t).insert(k, v)?;
        Ok(())
    }

    fn remove(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(t).take(k)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let ks = self.tree(t).inner();
        let it = match end {
            Some(end) => ks.range(from..end),
            None => ks.range(from..),
        };
        for g in it {
            let (k, v) = g.into_inner()?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn len(&self, t: TreeId) -> Result<usize, StoreError> {
        Ok(self.tree(t).inner().len()?)
    }

    /// The journal's sync, then the probe: fjall appends to its journal files (`probe.rs`).
    fn flush(&self) -> Result<(), StoreError> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.probe.check()
    }
}
