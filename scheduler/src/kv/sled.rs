//! The sled engine: six trees of one sled 0.34.7 `Db`, flushed with an `fsync` of its data file
//! and the journal probe (`probe.rs`).

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
    UnabortableTransactionError,
};

use super::probe::JournalProbe;
use super::{EngineError, Kv, TreeId, TxBody, TxFail, TxOps, TREE_NAMES};
use crate::error::StoreError;

fn engine_error(e: sled::Error) -> EngineError {
    let io = matches!(e, sled::Error::Io(_));
    EngineError::new(e, io)
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Engine(engine_error(e))
    }
}

fn tx_fail(e: UnabortableTransactionError) -> TxFail {
    match e {
        UnabortableTransactionError::Conflict => TxFail::Conflict,
        UnabortableTransactionError::Storage(e) => TxFail::Engine(engine_error(e)),
    }
}

/// sled 0.34.7: six trees of one `Db`.
pub(super) struct SledKv {
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

/// How long `open` waits for a lock held by this process's previous handle.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Between two attempts.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl SledKv {
    pub(super) fn open(path: &Path, cache_bytes: u64) -> Result<SledKv, StoreError> {
        remove_unfinished_snapshots(path)?;
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes);
        // A store of this process closed a moment ago (a reopen after an I/O error, a test) may
        // still be locked by sled's flusher thread until its next tick (500 ms): wait that out.
        // Another process's lock is still refused, one second later.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && waited < LOCK_WAIT =>
                {
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                r => break r?,
            }
        };
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
            .map_err(tx_fail)?
            .map(|v| v.to_vec()))
    }

    fn insert(&mut self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), TxFail> {
        self.trees[t as usize].insert(k, v).map_err(tx_fail)?;
        Ok(())
    }

    fn remove(&mut self, t: TreeId, k: &[u8]) -> Result<(), TxFail> {
        self.trees[t as usize].remove(k).map_err(tx_fail)?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn transact(&self, body: TxBody<'_>) -> Result<(), StoreError> {
        let [a, b, c, d, e, f] = &self.handles()?.1;
        let r = (a, b, c, d, e, f).transaction(|(a, b, c, d, e, f)| {
            let mut ops = SledTx {
                trees: [a, b, c, d, e, f],
            };
            body(&mut ops).map_err(|fail| match fail {
                TxFail::Conflict => ConflictableTransactionError::Conflict,
                fail => ConflictableTransactionError::Abort(StoreError::from(fail)),
            })
        });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(s)) => Err(s.into()),
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
    /// (tests/faults/disk_trouble.rs) lost adds and cancels answered 0 that way; the fsync (on any
    /// descriptor of the file) closes that window, and the journal probe catches an fsync that
    /// answered 0 although an abort cut its commit short (`probe.rs`).
    fn flush(&self) -> Result<(), StoreError> {
        self.handles()?.0.flush()?;
        self.file.sync_all().map_err(sled::Error::Io)?;
        self.probe.check()
    }
}
