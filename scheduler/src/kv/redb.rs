//! The redb engine: six tables of one redb 4 file, made durable by a redo log (`redo.rs`).
//!
//! Every transaction is committed to redb with `Durability::None` (written, not synced) and its
//! physical writes are appended to the redo log in the same order; `flush` is one `fdatasync`
//! of the log. redb's own durable commit costs about 1.2 ms here with quick repair (0.96 ms
//! without) against 0.2 ms for the log (docs/BENCHMARKS.md, "Three engines"), so it runs
//! only as a checkpoint, when the log is full, at open and at close. The position of the last
//! logged record is written in the same redb transaction as the record's writes, so a crash
//! leaves redb at its last checkpoint knowing exactly which records to redo.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::probe::JournalProbe;
use super::redo::{self, Ops, Position, RedoLog};
use super::{EngineError, Kv, TreeId, TxBody, TxFail, TxOps, TREE_NAMES};
use crate::error::StoreError;
use crate::record::Corrupt;

/// The database file of a redb store.
pub(super) const REDB_FILE: &str = "store.redb";

/// The redo log beside it.
const REDO_FILE: &str = "store.redo";

/// Size of the redo log. A checkpoint writes back every page the non-durable commits since the
/// last one left in redb's write buffer and holds the committer meanwhile: at 10k adds/s plus
/// 10k fires/s over 1M pending, 4 MiB means a 20-35 ms checkpoint every ~0.5 s (p99 lateness
/// 6.7 ms); 1 MiB halves the pause but doubles the total time spent in checkpoints (13 ms every
/// 0.12 s). 4 MiB also keeps the redo at open short and fits the smallest test data directories.
const REDO_CAPACITY: u64 = 4 << 20;

/// A table of byte keys and values.
type Table = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;

/// An open table of a write transaction.
type OpenTable<'tx> = redb::Table<'tx, &'static [u8], &'static [u8]>;

const TABLES: [Table; 6] = [
    redb::TableDefinition::new(TREE_NAMES[0]),
    redb::TableDefinition::new(TREE_NAMES[1]),
    redb::TableDefinition::new(TREE_NAMES[2]),
    redb::TableDefinition::new(TREE_NAMES[3]),
    redb::TableDefinition::new(TREE_NAMES[4]),
    redb::TableDefinition::new(TREE_NAMES[5]),
];

/// The engine's own table: where the redo log stands.
const REDO_TABLE: Table = redb::TableDefinition::new("redo");
const POSITION_KEY: &[u8] = b"position";

/// redb plus its redo log.
pub(super) struct RedbKv {
    db: redb::Database,
    log: RedoLog,
    /// The log's position; held from a transaction's commit to its append so that records
    /// follow commit order.
    position: Mutex<Position>,
    /// Set by the first failed log write or sync: the log may then miss a committed
    /// transaction, so every later write fails until the database is reopened (and redone
    /// from its last checkpoint).
    broken: AtomicBool,
    /// Checked after every checkpoint (`probe.rs`): a durable redb commit can grow its file,
    /// which the journal commits. The log's own sync needs no probe: its blocks are written
    /// at creation and only overwritten, so `fdatasync` commits no metadata.
    probe: JournalProbe,
}

/// Wraps any redb error type.
fn engine_error(e: impl Into<redb::Error>) -> EngineError {
    let e = e.into();
    let io = matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo);
    EngineError::new(e, io)
}

/// Maps any redb error type into the store's.
fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Engine(engine_error(e))
}

fn io_err(e: std::io::Error) -> StoreError {
    redb_err(redb::Error::Io(e))
}

impl RedbKv {
    /// Opens (or creates) the database in `path` and redoes the log's records after its last
    /// checkpoint.
    pub(super) fn open(path: &Path, cache_bytes: u64) -> Result<RedbKv, StoreError> {
        std::fs::create_dir_all(path).map_err(io_err)?;
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(path.join(REDB_FILE))
            .map_err(redb_err)?;
        let log = RedoLog::open(&path.join(REDO_FILE), REDO_CAPACITY).map_err(io_err)?;
        let tx = db.begin_write().map_err(redb_err)?;
        let end = {
            let mut tables = open_tables(&tx)?;
            let redo = tx.open_table(REDO_TABLE).map_err(redb_err)?;
            let from = match redb::ReadableTable::get(&redo, POSITION_KEY).map_err(redb_err)? {
                Some(v) => Position::decode(v.value()).ok_or(Corrupt)?,
                None => Position::default(),
            };
            let (records, end) = log.records(from).map_err(io_err)?;
            for payload in &records {
                for op in redo::decode(payload).ok_or(Corrupt)? {
                    match op {
                        redo::Op::Put(t, k, v) => {
                            tables[t as usize].insert(k, v).map_err(redb_err)?;
                        }
                        redo::Op::Del(t, k) => {
                            tables[t as usize].remove(k).map_err(redb_err)?;
                        }
                    }
                }
            }
            if !records.is_empty() {
                tracing::info!(
                    records = records.len(),
                    from = from.seq,
                    to = end.seq,
                    "delay store: redid the log after the last checkpoint"
                );
            }
            end
        };
        let at = checkpoint(tx, end)?;
        // After the checkpoint and the log's creation: both synced through the journal.
        let probe = JournalProbe::open(path)?;
        probe.check()?;
        Ok(RedbKv {
            db,
            log,
            position: Mutex::new(at),
            broken: AtomicBool::new(false),
            probe,
        })
    }

    /// Runs `body` in one write transaction, commits it and logs its writes.
    fn write<T>(
        &self,
        body: impl FnOnce(&mut RedbTx<'_>) -> Result<T, TxFail>,
    ) -> Result<T, StoreError> {
        let mut at = self.position.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(Ordering::Acquire) {
            return Err(redb_err(redb::Error::PreviousIo));
        }
        let mut tx = self.db.begin_write().map_err(redb_err)?;
        let (out, ops) = {
            let mut rtx = RedbTx {
                tables: open_tables(&tx)?,
                ops: Ops::default(),
            };
            (body(&mut rtx), rtx.ops)
        };
        let out = match out {
            Ok(v) => v,
            Err(fail) => {
                tx.abort().map_err(redb_err)?;
                return Err(fail.into());
            }
        };
        if ops.is_empty() {
            tx.abort().map_err(redb_err)?;
            return Ok(out);
        }
        let len = ops.record_len();
        if self.log.fits(*at, len) {
            let next = at.after(len);
            tx.set_durability(redb::Durability::None)
                .map_err(redb_err)?;
            set_position(&tx, next)?;
            tx.commit().map_err(redb_err)?;
            if let Err(e) = self.log.append(*at, &ops) {
                self.broken.store(true, Ordering::Release);
                return Err(io_err(e));
            }
            *at = next;
        } else {
            // The log is full: this transaction is the checkpoint (durable, so it needs no
            // record).
            let t0 = std::time::Instant::now();
            *at = checkpoint(tx, *at)?;
            if let Err(e) = self.probe.check() {
                self.broken.store(true, Ordering::Release);
                return Err(e);
            }
            tracing::debug!(elapsed = ?t0.elapsed(), "delay store: checkpoint");
        }
        Ok(out)
    }

    fn read(
        &self,
        t: TreeId,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        use redb::ReadableDatabase;
        let tx = self.db.begin_read().map_err(redb_err)?;
        tx.open_table(TABLES[t as usize]).map_err(redb_err)
    }
}

impl Drop for RedbKv {
    /// A clean close checkpoints, so the next open has nothing to redo.
    fn drop(&mut self) {
        if self.broken.load(Ordering::Acquire) {
            return;
        }
        let at = *self.position.get_mut().unwrap_or_else(|e| e.into_inner());
        let done = self
            .db
            .begin_write()
            .map_err(redb_err)
            .and_then(|tx| checkpoint(tx, at));
        if let Err(e) = done {
            tracing::warn!(error = %e, "delay store: no checkpoint at close; the log will be redone");
        }
    }
}

/// Commits `tx` durably as a checkpoint: everything up to record `at.seq` is in redb, so the
/// log starts again at its beginning; answers that new position. Quick repair saves the
/// allocator state, so that a crash after it needs no repair scan of the file.
fn checkpoint(mut tx: redb::WriteTransaction, at: Position) -> Result<Position, StoreError> {
    let next = Position {
        seq: at.seq,
        offset: 0,
    };
    tx.set_quick_repair(true);
    set_position(&tx, next)?;
    tx.commit().map_err(redb_err)?;
    Ok(next)
}

fn open_tables(tx: &redb::WriteTransaction) -> Result<Vec<OpenTable<'_>>, StoreError> {
    TABLES
        .iter()
        .map(|t| tx.open_table(*t).map_err(redb_err))
        .collect()
}

fn set_position(tx: &redb::WriteTransaction, at: Position) -> Result<(), StoreError> {
    tx.open_table(REDO_TABLE)
        .map_err(redb_err)?
        .insert(POSITION_KEY, &at.encode()[..])
        .map_err(redb_err)?;
    Ok(())
}

/// The open tables of a write transaction and the writes made so far.
struct RedbTx<'tx> {
    tables: Vec<OpenTable<'tx>>,
    ops: Ops,
}

impl RedbTx<'_> {
    /// Deletes `k` and returns its old value.
    fn take(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail> {
        let old = self.tables[t as usize]
            .remove(k)
            .map_err(|e| TxFail::Engine(engine_error(e)))?
            .map(|v| v.value().to_vec());
        if old.is_some() {
            self.ops.del(t, k);
        }
        Ok(old)
    }
}

impl TxOps for RedbTx<'_> {
    fn get(&mut self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, TxFail> {
        use redb::ReadableTable;
        Ok(self.tables[t as usize]
            .get(k)
            .map_err(|e| TxFail::Engine(engine_error(e)))?
            .map(|v| v.value().to_vec()))
    }

    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail> {
        self.tables[t as usize]
            .insert(k, v)
            .map_err(|e| TxFail::Engine(engine_error(e)))?;
        self.ops.put(t, k, v);
        Ok(())
    }

    /// Like `take`, without copying the old value out (a removed record holds its body).
    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail> {
        let existed = self.tables[t as usize]
            .remove(k)
            .map_err(|e| TxFail::Engine(engine_error(e)))?
            .is_some();
        if existed {
            self.ops.del(t, k);
        }
        Ok(())
    }
}

impl Kv for RedbKv {
    fn transact(&self, body: TxBody<'_>) -> Result<(), StoreError> {
        self.write(|tx| body(tx))
    }

    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .read(t)?
            .get(k)
            .map_err(redb_err)?
            .map(|v| v.value().to_vec()))
    }

    /// One read transaction for all of them: opening one costs more than a lookup.
    fn get_many(&self, t: TreeId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let table = self.read(t)?;
        keys.iter()
            .map(|k| Ok(table.get(*k).map_err(redb_err)?.map(|v| v.value().to_vec())))
            .collect()
    }

    fn insert(&self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| tx.insert(t, k, v))
    }

    fn remove(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(|tx| tx.take(t, k))
    }

    fn scan(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let table = self.read(t)?;
        let it = match end {
            Some(end) => table.range::<&[u8]>(from..end),
            None => table.range::<&[u8]>(from..),
        }
        .map_err(redb_err)?;
        for kv in it {
            let (k, v) = kv.map_err(redb_err)?;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    fn len(&self, t: TreeId) -> Result<usize, StoreError> {
        use redb::ReadableTableMetadata;
        Ok(self.read(t)?.len().map_err(redb_err)? as usize)
    }

    /// One `fdatasync` of the log: every transaction committed so far is logged.
    fn flush(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(redb_err(redb::Error::PreviousIo));
        }
        self.log.sync().map_err(|e| {
            self.broken.store(true, Ordering::Release);
            io_err(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies the store's files while it is open: what a SIGKILL would leave (the page cache
    /// survives a process crash), without the checkpoint a clean close makes.
    fn crash_copy(from: &Path, to: &Path, with_log: bool) {
        std::fs::create_dir_all(to).unwrap();
        std::fs::copy(from.join(REDB_FILE), to.join(REDB_FILE)).unwrap();
        if with_log {
            std::fs::copy(from.join(REDO_FILE), to.join(REDO_FILE)).unwrap();
        }
    }

    fn count(kv: &RedbKv) -> usize {
        kv.len(TreeId::Records).unwrap()
    }

    #[test]
    fn flushed_writes_survive_a_crash_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (live, crashed, no_log) = (
            dir.path().join("live"),
            dir.path().join("crashed"),
            dir.path().join("no_log"),
        );
        let kv = RedbKv::open(&live, 1 << 20).unwrap();
        for i in 0..100u32 {
            kv.transact(&|ops| {
                ops.insert(TreeId::Records, &i.to_be_bytes(), b"record")?;
                ops.insert(TreeId::Due, &i.to_be_bytes(), &[])?;
                Ok(())
            })
            .unwrap();
        }
        kv.remove(TreeId::Due, &7u32.to_be_bytes()).unwrap();
        kv.flush().unwrap();
        crash_copy(&live, &crashed, true);
        crash_copy(&live, &no_log, false);
        let back = RedbKv::open(&crashed, 1 << 20).unwrap();
        assert_eq!(count(&back), 100);
        assert_eq!(back.len(TreeId::Due).unwrap(), 99);
        assert_eq!(back.get(TreeId::Due, &7u32.to_be_bytes()).unwrap(), None);
        // Without its log the database is at its last checkpoint (the open): the log carried
        // every write.
        assert_eq!(count(&RedbKv::open(&no_log, 1 << 20).unwrap()), 0);
        // The redo ended in a checkpoint: a second crash right after it loses nothing.
        let again = dir.path().join("again");
        crash_copy(&crashed, &again, true);
        assert_eq!(count(&RedbKv::open(&again, 1 << 20).unwrap()), 100);
    }

    #[test]
    fn a_full_log_checkpoints_and_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let (live, crashed) = (dir.path().join("live"), dir.path().join("crashed"));
        let kv = RedbKv::open(&live, 1 << 20).unwrap();
        let value = vec![0x5a; 10_000];
        // About 2.5 passes over the 4 MiB log.
        let n = (REDO_CAPACITY as usize * 5 / 2) / value.len();
        for i in 0..n as u32 {
            kv.insert(TreeId::Records, &i.to_be_bytes(), &value)
                .unwrap();
        }
        kv.flush().unwrap();
        let at = *kv.position.lock().unwrap();
        assert!(at.seq < n as u64, "checkpoints took records out of the log");
        assert!(at.offset < REDO_CAPACITY);
        crash_copy(&live, &crashed, true);
        let back = RedbKv::open(&crashed, 1 << 20).unwrap();
        assert_eq!(count(&back), n);
        assert_eq!(
            back.get(TreeId::Records, &(n as u32 - 1).to_be_bytes())
                .unwrap()
                .as_deref(),
            Some(&value[..])
        );
    }
}
