//! The durable store: sled trees mutated in multi-tree transactions (delay.md §8.1).
//!
//! Every call here blocks on sled; the scheduler calls them from the committer thread or a
//! blocking-pool thread, never from the async runtime's workers.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Db, Tree};

use crate::record::{Corrupt, Record};

/// Storage failures (answered 10 on the wire).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The database was closed after an I/O error and is not open again yet (disk full,
    /// read-only filesystem); the scheduler keeps trying to reopen it.
    #[error("storage unavailable: closed after an I/O error, reopening")]
    Unavailable,
}

impl StoreError {
    /// An I/O error of the data directory. sled fails every later write with the first one it
    /// hits (its error state is cleared only by opening the database again).
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(_)))
    }
}

impl From<TransactionError<Corrupt>> for StoreError {
    fn from(e: TransactionError<Corrupt>) -> Self {
        match e {
            TransactionError::Abort(c) => StoreError::Corrupt(c),
            TransactionError::Storage(s) => StoreError::Sled(s),
        }
    }
}

/// Final states kept in `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// One-shot fired.
    Fired = 1,
    /// Loop ended.
    Completed = 2,
    /// Cancelled while pending.
    Cancelled = 3,
    /// Dead-lettered (one-shot).
    Dead = 4,
    /// A cancel arrived for an id never seen; remembered so a late add stays cancelled.
    CancelledUnknown = 5,
}

impl Final {
    fn from_u8(v: u8) -> Final {
        match v {
            1 => Final::Fired,
            2 => Final::Completed,
            3 => Final::Cancelled,
            4 => Final::Dead,
            _ => Final::CancelledUnknown,
        }
    }

    /// Status-API name.
    pub fn name(self) -> &'static str {
        match self {
            Final::Fired => "fired",
            Final::Completed => "completed",
            Final::Cancelled => "cancelled",
            Final::Dead => "dead",
            Final::CancelledUnknown => "unknown",
        }
    }
}

/// Result of a cancel (delay.md §5.1, operations.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// Pending record deleted.
    Cancelled = 1,
    /// Id never seen (remembered).
    Unknown = 2,
    /// Id already finished.
    AfterFinish = 3,
    /// Pending under another topic: not cancelled (code 30).
    TopicMismatch = 4,
    /// Pending, but added by another principal: not cancelled (code 30).
    NotOwner = 5,
}

impl CancelResult {
    fn from_u8(v: u8) -> CancelResult {
        match v {
            1 => CancelResult::Cancelled,
            2 => CancelResult::Unknown,
            3 => CancelResult::AfterFinish,
            5 => CancelResult::NotOwner,
            _ => CancelResult::TopicMismatch,
        }
    }

    /// Status-API name.
    pub fn name(self) -> &'static str {
        match self {
            CancelResult::Cancelled => "cancelled",
            CancelResult::Unknown => "unknown",
            CancelResult::AfterFinish => "after_finish",
            CancelResult::TopicMismatch => "topic_mismatch",
            CancelResult::NotOwner => "not_owner",
        }
    }
}

/// A finished id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneEntry {
    /// Final state.
    pub state: Final,
    /// When it finished, epoch ms.
    pub finished_ms: i64,
    /// Last occurrence index.
    pub last_index: u64,
    /// Cancel attempts (at ms, result), bounded.
    pub cancels: Vec<(i64, CancelResult)>,
}

const MAX_CANCELS_KEPT: usize = 16;

impl DoneEntry {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.state as u8];
        v.extend_from_slice(&self.finished_ms.to_be_bytes());
        v.extend_from_slice(&self.last_index.to_be_bytes());
        for (at, r) in &self.cancels {
            v.extend_from_slice(&at.to_be_bytes());
            v.push(*r as u8);
        }
        v
    }

    fn decode(b: &[u8]) -> Result<DoneEntry, Corrupt> {
        if b.len() < 17 || !(b.len() - 17).is_multiple_of(9) {
            return Err(Corrupt);
        }
        let i64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            i64::from_be_bytes(a)
        };
        let cancels = (17..b.len())
            .step_by(9)
            .map(|o| (i64_at(o), CancelResult::from_u8(b[o + 8])))
            .collect();
        Ok(DoneEntry {
            state: Final::from_u8(b[0]),
            finished_ms: i64_at(1),
            last_index: i64_at(9) as u64,
            cancels,
        })
    }
}

/// How one fire attempt ended, as the completion records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireEnd {
    /// Stored by the broker.
    Ok,
    /// Retry at `at_ms`.
    Retry {
        /// When to try again.
        at_ms: i64,
    },
    /// Dead-letter this occurrence.
    Dead {
        /// Last result code.
        code: i32,
        /// Last message.
        msg: String,
    },
}

/// Catch-up policy for loops (delay.md §5.3).
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    /// `skip` (true) or `all`.
    pub skip: bool,
    /// Lateness tolerated before skipping, ms.
    pub late_tolerance_ms: i64,
    /// `all`: most overdue occurrences fired in a row.
    pub max_catch_up: u32,
}

/// One mutation applied by the committer.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Store a new record (idempotent by id).
    Add {
        /// Canonical id.
        id: String,
        /// The record.
        record: Box<Record>,
    },
    /// Cancel a canonical id.
    Cancel {
        /// Canonical id.
        id: String,
        /// Topic of the request.
        topic: String,
        /// Request time, epoch ms.
        at_ms: i64,
        /// The requesting principal when ACLs are on: a record added by another one stays.
        principal: Option<String>,
    },
    /// Finish a fire attempt of occurrence `k`.
    Complete {
        /// Canonical id.
        id: String,
        /// Occurrence index fired.
        k: u64,
        /// Outcome.
        end: FireEnd,
        /// Completion time, epoch ms.
        now_ms: i64,
        /// Loop catch-up policy.
        catch_up: CatchUp,
    },
    /// Drop a pending record that another node finished (a cluster-journal tombstone, written
    /// only after the id was fired to the end or cancelled), without firing it.
    Forget {
        /// Canonical id.
        id: String,
        /// When the tombstone was read, epoch ms.
        at_ms: i64,
    },
    /// Apply `inner` (an add, cancel or completion read from a cluster journal) and store
    /// `offset` as the journal position applied, in the same transaction (delay.md §10).
    Journaled {
        /// Journal offset of the record.
        offset: u64,
        /// The mutation it carries.
        inner: Box<Mutation>,
    },
    /// Delete `done` entries finished before `before_ms` and dead letters older than
    /// `dead_before_ms`, at most `limit` of each.
    Trim {
        /// Done retention bound.
        before_ms: i64,
        /// Dead retention bound.
        dead_before_ms: i64,
        /// Batch bound.
        limit: usize,
    },
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Add stored a new record due at `due_ms`.
    Added {
        /// Due time of occurrence 0.
        due_ms: i64,
    },
    /// Add found the id pending or finished: nothing changed.
    AddExisting,
    /// Cancel outcome.
    Cancel(CancelResult),
    /// Completion: the record is due again at `due_ms` (retry or next loop occurrence).
    Rescheduled {
        /// New due time.
        due_ms: i64,
        /// Occurrences skipped by catch-up.
        skipped: u64,
        /// Whether the occurrence was dead-lettered.
        dead: bool,
    },
    /// Completion finished the record.
    Finished(Final),
    /// Completion for a record no longer pending at that index (cancelled meanwhile).
    Stale,
    /// Trim removed this many entries.
    Trimmed(usize),
}

const PENDING_KEY: &[u8] = b"pending";
/// Meta key of the last cluster-journal offset applied.
const JOURNAL_OFFSET_KEY: &[u8] = b"journal_offset";

/// Key of the `due` tree: big-endian due ms, then the id.
pub fn due_key(due_ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a `due` key into (due ms, id).
pub fn split_due_key(k: &[u8]) -> Option<(i64, String)> {
    if k.len() < 8 {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&k[..8]);
    Some((
        u64::from_be_bytes(a) as i64,
        String::from_utf8(k[8..].to_vec()).ok()?,
    ))
}

/// Key of a group's `done_by_time` entry: finished ms, `0x00`, the group's first id (the
/// `0x00` keeps it apart from the per-id keys of older stores).
fn group_time_key(ms: i64, first_id: &str) -> Vec<u8> {
    let mut k = due_key(ms, "");
    k.push(0);
    k.extend_from_slice(first_id.as_bytes());
    k
}

/// Decodes a group entry's value: ids, each prefixed by its u32 big-endian length.
fn split_id_list(mut v: &[u8]) -> Result<Vec<String>, Corrupt> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let len = v
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(Corrupt)?;
        let id = v.get(4..4 + len).ok_or(Corrupt)?;
        out.push(String::from_utf8(id.to_vec()).map_err(|_| Corrupt)?);
        v = &v[4 + len..];
    }
    Ok(out)
}

fn dead_key(id: &str, k: u64) -> Vec<u8> {
    let mut v = id.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(&k.to_be_bytes());
    v
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Canonical id.
    pub id: String,
    /// Occurrence index.
    pub k: u64,
    /// Record snapshot.
    pub record: Record,
    /// Last code.
    pub code: i32,
    /// Last message.
    pub msg: String,
    /// When it was dead-lettered.
    pub dead_ms: i64,
}

fn encode_dead(r: &Record, code: i32, msg: &str, dead_ms: i64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dead_ms.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg.as_bytes());
    v.extend_from_slice(&r.encode());
    v
}

fn decode_dead(key: &[u8], v: &[u8]) -> Result<DeadLetter, Corrupt> {
    let sep = key.len().checked_sub(9).ok_or(Corrupt)?;
    let id = String::from_utf8(key[..sep].to_vec()).map_err(|_| Corrupt)?;
    let mut kb = [0u8; 8];
    kb.copy_from_slice(&key[sep + 1..]);
    if v.len() < 16 {
        return Err(Corrupt);
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&v[..8]);
    let code = i32::from_be_bytes([v[8], v[9], v[10], v[11]]);
    let n = u32::from_be_bytes([v[12], v[13], v[14], v[15]]) as usize;
    let msg = v.get(16..16 + n).ok_or(Corrupt)?;
    Ok(DeadLetter {
        id,
        k: u64::from_be_bytes(kb),
        record: Record::decode(&v[16 + n..])?,
        code,
        msg: String::from_utf8_lossy(msg).into_owned(),
        dead_ms: i64::from_be_bytes(a),
    })
}

/// The sled database and its trees (one opening of the database).
struct Trees {
    /// sled's data file, opened read-only: `flush` fsyncs it (see `Trees::flush`).
    file: std::fs::File,
    db: Db,
    records: Tree,
    due: Tree,
    done: Tree,
    done_by_time: Tree,
    dead: Tree,
    meta: Tree,
}

type Abort = ConflictableTransactionError<Corrupt>;

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

impl Trees {
    /// Opens (or creates) the database; sled's lock keeps a second process out.
    fn open(path: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
        remove_unfinished_snapshots(path)?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(Trees {
            records: db.open_tree("records")?,
            due: db.open_tree("due")?,
            done: db.open_tree("done")?,
            done_by_time: db.open_tree("done_by_time")?,
            dead: db.open_tree("dead")?,
            meta: db.open_tree("meta")?,
            file: std::fs::File::open(path.join("db")).map_err(sled::Error::Io)?,
            db,
        })
    }

    /// Makes everything written so far durable: sled's flush, then an `fsync` of its data file.
    /// sled 0.34 ends a flush with `sync_file_range` on Linux, which writes the data pages but
    /// commits neither the metadata of the blocks appended to its log (file size, extents) nor
    /// the device's write cache; its own `fsync` runs only every 500 ms in the background. A
    /// test that aborted ext4 under load (tests/disk_trouble.rs) lost adds and cancels answered
    /// 0 that way; the fsync (on any descriptor of the file) closes that window.
    pub fn flush(&self) -> Result<usize, StoreError> {
        let n = self.db.flush()?;
        self.file.sync_all().map_err(sled::Error::Io)?;
        Ok(n)
    }

    /// Applies one mutation in one multi-tree transaction.
    pub fn apply(&self, m: &Mutation) -> Result<Applied, StoreError> {
        let mut out = self.apply_group(&[m])?;
        Ok(out.pop().unwrap_or(Applied::Trimmed(0)))
    }

    /// Applies a group of mutations in one multi-tree transaction (trims run outside it).
    /// One transaction per group costs far less than one per mutation; a group that fails is
    /// retried mutation by mutation by the caller so one bad record cannot fail the others.
    pub fn apply_group(&self, ms: &[&Mutation]) -> Result<Vec<Applied>, StoreError> {
        if let [Mutation::Trim {
            before_ms,
            dead_before_ms,
            limit,
        }] = ms
        {
            return Ok(vec![self.trim(*before_ms, *dead_before_ms, *limit)?]);
        }
        let trees = (
            &self.records,
            &self.due,
            &self.done,
            &self.done_by_time,
            &self.dead,
            &self.meta,
        );
        let r = trees.transaction(|(records, due, done, dbt, dead_tree, meta)| {
            // The pending count lives in the same transactions that change it, so it is exact
            // after any crash and start-up never has to walk the records.
            let bump = |delta: i64| -> Result<(), Abort> {
                let cur = meta
                    .get(PENDING_KEY)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map_or(0, i64::from_be_bytes);
                meta.insert(PENDING_KEY, &(cur + delta).to_be_bytes())?;
                Ok(())
            };
            // Ids finished by this group: indexed for trimming by one `done_by_time` entry per
            // group instead of one per id (one write fewer per completion).
            let finished: RefCell<Vec<(i64, String)>> = RefCell::new(Vec::new());
            let finish = |id: &str, entry: &DoneEntry| -> Result<(), Abort> {
                done.insert(id.as_bytes(), entry.encode())?;
                finished
                    .borrow_mut()
                    .push((entry.finished_ms, id.to_string()));
                Ok(())
            };
            let one = |m: &Mutation| -> Result<Applied, Abort> {
                match m {
                    Mutation::Add { id, record } => {
                        if records.get(id.as_bytes())?.is_some()
                            || done.get(id.as_bytes())?.is_some()
                        {
                            return Ok(Applied::AddExisting);
                        }
                        records.insert(id.as_bytes(), record.encode())?;
                        due.insert(due_key(record.next_due_ms, id), &[])?;
                        bump(1)?;
                        Ok(Applied::Added {
                            due_ms: record.next_due_ms,
                        })
                    }
                    Mutation::Cancel {
                        id,
                        topic,
                        at_ms,
                        principal,
                    } => {
                        if let Some(raw) = records.get(id.as_bytes())? {
                            let rec = Record::decode(&raw).map_err(Abort::Abort)?;
                            if rec.topic != *topic {
                                return Ok(Applied::Cancel(CancelResult::TopicMismatch));
                            }
                            // Records added without ACLs have no owner: any allowed client may
                            // cancel them.
                            if let Some(p) = principal {
                                if !rec.owner.is_empty() && rec.owner != *p {
                                    return Ok(Applied::Cancel(CancelResult::NotOwner));
                                }
                            }
                            records.remove(id.as_bytes())?;
                            due.remove(due_key(rec.next_due_ms, id))?;
                            bump(-1)?;
                            finish(
                                id,
                                &DoneEntry {
                                    state: Final::Cancelled,
                                    finished_ms: *at_ms,
                                    last_index: rec.next_index,
                                    cancels: vec![(*at_ms, CancelResult::Cancelled)],
                                },
                            )?;
                            return Ok(Applied::Cancel(CancelResult::Cancelled));
                        }
                        if let Some(raw) = done.get(id.as_bytes())? {
                            let mut entry = DoneEntry::decode(&raw).map_err(Abort::Abort)?;
                            let result = if entry.state == Final::CancelledUnknown {
                                CancelResult::Unknown
                            } else {
                                CancelResult::AfterFinish
                            };
                            if entry.cancels.len() < MAX_CANCELS_KEPT {
                                entry.cancels.push((*at_ms, result));
                            }
                            done.insert(id.as_bytes(), entry.encode())?;
                            return Ok(Applied::Cancel(result));
                        }
                        finish(
                            id,
                            &DoneEntry {
                                state: Final::CancelledUnknown,
                                finished_ms: *at_ms,
                                last_index: 0,
                                cancels: vec![(*at_ms, CancelResult::Unknown)],
                            },
                        )?;
                        Ok(Applied::Cancel(CancelResult::Unknown))
                    }
                    Mutation::Complete {
                        id,
                        k,
                        end,
                        now_ms,
                        catch_up,
                    } => {
                        let Some(raw) = records.get(id.as_bytes())? else {
                            return Ok(Applied::Stale);
                        };
                        let mut rec = Record::decode(&raw).map_err(Abort::Abort)?;
                        if rec.next_index != *k {
                            return Ok(Applied::Stale);
                        }
                        let old_due = due_key(rec.next_due_ms, id);
                        let dead = matches!(end, FireEnd::Dead { .. });
                        if let FireEnd::Dead { code, msg } = end {
                            dead_tree
                                .insert(dead_key(id, *k), encode_dead(&rec, *code, msg, *now_ms))?;
                        }
                        if let FireEnd::Retry { at_ms } = end {
                            rec.attempts += 1;
                            if rec.first_failure_ms == 0 {
                                rec.first_failure_ms = *now_ms;
                            }
                            rec.next_due_ms = *at_ms;
                            due.remove(old_due)?;
                            due.insert(due_key(rec.next_due_ms, id), &[])?;
                            records.insert(id.as_bytes(), rec.encode())?;
                            return Ok(Applied::Rescheduled {
                                due_ms: *at_ms,
                                skipped: 0,
                                dead: false,
                            });
                        }
                        // Ok or dead: move to the next occurrence, or finish.
                        let next = rec.next_after(
                            *k,
                            *now_ms,
                            catch_up.late_tolerance_ms,
                            catch_up.skip,
                            catch_up.max_catch_up,
                        );
                        due.remove(old_due)?;
                        match next {
                            Some((n, skipped, caught_up)) => {
                                rec.next_index = n;
                                rec.caught_up = caught_up;
                                rec.next_due_ms = rec.due_ms(n);
                                rec.attempts = 0;
                                rec.first_failure_ms = 0;
                                due.insert(due_key(rec.next_due_ms, id), &[])?;
                                records.insert(id.as_bytes(), rec.encode())?;
                                Ok(Applied::Rescheduled {
                                    due_ms: rec.next_due_ms,
                                    skipped,
                                    dead,
                                })
                            }
                            None => {
                                records.remove(id.as_bytes())?;
                                bump(-1)?;
                                let state = match (rec.kind(), dead) {
                                    (crate::record::Kind::Once, true) => Final::Dead,
                                    (crate::record::Kind::Once, false) => Final::Fired,
                                    _ => Final::Completed,
                                };
                                finish(
                                    id,
                                    &DoneEntry {
                                        state,
                                        finished_ms: *now_ms,
                                        last_index: *k,
                                        cancels: vec![],
                                    },
                                )?;
                                Ok(Applied::Finished(state))
                            }
                        }
                    }
                    Mutation::Forget { id, at_ms } => {
                        let Some(raw) = records.get(id.as_bytes())? else {
                            return Ok(Applied::Stale);
                        };
                        let rec = Record::decode(&raw).map_err(Abort::Abort)?;
                        records.remove(id.as_bytes())?;
                        due.remove(due_key(rec.next_due_ms, id))?;
                        bump(-1)?;
                        let state = match rec.kind() {
                            crate::record::Kind::Once => Final::Fired,
                            _ => Final::Completed,
                        };
                        finish(
                            id,
                            &DoneEntry {
                                state,
                                finished_ms: *at_ms,
                                last_index: rec.next_index,
                                cancels: vec![],
                            },
                        )?;
                        Ok(Applied::Finished(state))
                    }
                    Mutation::Trim { .. } | Mutation::Journaled { .. } => Ok(Applied::Trimmed(0)),
                }
            };
            let mut out = Vec::with_capacity(ms.len());
            for m in ms {
                match m {
                    Mutation::Journaled { offset, inner } => {
                        out.push(one(inner)?);
                        meta.insert(JOURNAL_OFFSET_KEY, &offset.to_be_bytes())?;
                    }
                    m => out.push(one(m)?),
                }
            }
            let fin = finished.borrow();
            if let Some(max_ms) = fin.iter().map(|(ms, _)| *ms).max() {
                // Keyed by the latest finish time of the group, so trimming reaches the entry
                // only once every id in it is past retention.
                let key = group_time_key(max_ms, &fin[0].1);
                let mut v = dbt.get(&key)?.map(|v| v.to_vec()).unwrap_or_default();
                for (_, id) in fin.iter() {
                    v.extend_from_slice(&(id.len() as u32).to_be_bytes());
                    v.extend_from_slice(id.as_bytes());
                }
                dbt.insert(key, v)?;
            }
            Ok(out)
        })?;
        Ok(r)
    }

    fn trim(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        limit: usize,
    ) -> Result<Applied, StoreError> {
        let mut n = 0;
        let end = due_key(before_ms, "");
        for kv in self.done_by_time.range(..end) {
            if n >= limit {
                break;
            }
            let (k, v) = kv?;
            // An empty value is a per-id entry (finished ms ‖ id, older stores); otherwise the
            // value lists the ids a group finished.
            let ids = if v.is_empty() {
                split_due_key(&k).map(|(_, id)| id).into_iter().collect()
            } else {
                split_id_list(&v)?
            };
            for id in ids {
                // A re-finished id has a newer time entry: only delete when this one is current.
                if let Some(raw) = self.done.get(id.as_bytes())? {
                    if DoneEntry::decode(&raw)?.finished_ms < before_ms {
                        self.done.remove(id.as_bytes())?;
                    }
                }
                n += 1;
            }
            self.done_by_time.remove(k)?;
        }
        let mut stale = Vec::new();
        for kv in self.dead.iter() {
            let (k, v) = kv?;
            if v.len() >= 8 {
                let mut a = [0u8; 8];
                a.copy_from_slice(&v[..8]);
                if i64::from_be_bytes(a) < dead_before_ms {
                    stale.push(k);
                }
            }
            if stale.len() >= limit {
                break;
            }
        }
        for k in stale {
            self.dead.remove(k)?;
            n += 1;
        }
        Ok(Applied::Trimmed(n))
    }

    /// The pending record of a canonical id.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(match self.records.get(id.as_bytes())? {
            Some(v) => Some(Record::decode(&v)?),
            None => None,
        })
    }

    /// The done entry of a canonical id.
    pub fn done(&self, id: &str) -> Result<Option<DoneEntry>, StoreError> {
        Ok(match self.done.get(id.as_bytes())? {
            Some(v) => Some(DoneEntry::decode(&v)?),
            None => None,
        })
    }

    /// Dead letters of one id.
    pub fn dead_of(&self, id: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        self.dead
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok(decode_dead(&k, &v)?)
            })
            .collect()
    }

    /// All dead letters (optionally of one topic), oldest first, at most `limit`.
    pub fn dead_letters(
        &self,
        topic: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for kv in self.dead.iter() {
            let (k, v) = kv?;
            let d = decode_dead(&k, &v)?;
            if topic.is_none_or(|t| d.record.topic == t) {
                out.push(d);
            }
        }
        out.sort_by_key(|d| d.dead_ms);
        out.truncate(limit);
        Ok(out)
    }

    /// Removes one dead letter; returns it.
    pub fn take_dead(&self, id: &str, k: u64) -> Result<Option<DeadLetter>, StoreError> {
        let key = dead_key(id, k);
        Ok(match self.dead.remove(&key)? {
            Some(v) => Some(decode_dead(&key, &v)?),
            None => None,
        })
    }

    /// Number of dead letters.
    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// `due` entries from `from_ms` (inclusive) up to `to_ms` (exclusive), at most `limit`.
    pub fn due_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.due_after(&due_key(from_ms, ""), &due_key(to_ms, ""), limit)
    }

    /// `due` entries with keys from `from` (inclusive) up to `end` (exclusive), at most `limit`.
    pub fn due_after(
        &self,
        from: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.due.range(from.to_vec()..end.to_vec()).take(limit) {
            let (k, _) = kv?;
            if let Some(e) = split_due_key(&k) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Stores (or replaces) a dead letter.
    pub fn put_dead(&self, d: &DeadLetter) -> Result<(), StoreError> {
        self.dead.insert(
            dead_key(&d.id, d.k),
            encode_dead(&d.record, d.code, &d.msg, d.dead_ms),
        )?;
        Ok(())
    }

    /// Earliest pending due time.
    pub fn first_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(match self.due.first()? {
            Some((k, _)) => split_due_key(&k).map(|(d, _)| d),
            None => None,
        })
    }

    /// Number of pending records: the stored counter, or a walk of the records (once, for a
    /// database written before the counter existed).
    pub fn count_pending(&self) -> Result<i64, StoreError> {
        if let Some(v) = self.meta.get(PENDING_KEY)? {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_ref()) {
                return Ok(i64::from_be_bytes(b));
            }
        }
        let n = self.records.len() as i64;
        self.meta.insert(PENDING_KEY, &n.to_be_bytes())?;
        Ok(n)
    }

    /// Writes a meta value.
    pub fn set_meta(&self, name: &str, v: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(name.as_bytes(), v)?;
        Ok(())
    }

    /// Reads a meta value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(name.as_bytes())?.map(|v| v.to_vec()))
    }

    /// The last cluster-journal offset applied (`Mutation::Journaled`), if any.
    pub fn journal_offset(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta
            .get(JOURNAL_OFFSET_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }
}

/// The durable store: a handle shared by the committer, the loader and the fire path.
///
/// sled 0.34 records the first I/O error of its log writer (ENOSPC, EROFS, EIO) in a
/// database-wide error state and fails every later write with it, even after the disk has
/// space again; only opening the database again clears it. The store therefore notes the
/// first I/O error (`is_failed`) and `reopen` closes and re-opens the database in place; while
/// it is closed every call answers `StoreError::Unavailable`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    cache_bytes: u64,
    current: RwLock<Option<Arc<Trees>>>,
    failed: AtomicBool,
    reopens: AtomicU64,
}

/// One opening of the database, held across several calls (see `Store::pin`).
pub struct Pinned<'a> {
    store: &'a Store,
    trees: Arc<Trees>,
}

impl Pinned<'_> {
    /// `Store::apply` on the pinned database.
    pub fn apply(&self, m: &Mutation) -> Result<Applied, StoreError> {
        self.store.note(self.trees.apply(m))
    }

    /// `Store::apply_group` on the pinned database.
    pub fn apply_group(&self, ms: &[&Mutation]) -> Result<Vec<Applied>, StoreError> {
        self.store.note(self.trees.apply_group(ms))
    }

    /// `Store::flush` of the pinned database.
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.store.note(self.trees.flush())
    }

    /// `Store::first_due` on the pinned database.
    pub fn first_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.note(self.trees.first_due())
    }

    /// `Store::set_meta` on the pinned database.
    pub fn set_meta(&self, name: &str, v: &[u8]) -> Result<(), StoreError> {
        self.store.note(self.trees.set_meta(name, v))
    }
}

/// Meta key written and flushed by `reopen` to prove the database writable.
const PROBE_KEY: &str = "reopen_probe";

impl Store {
    /// Opens (or creates) the store; sled's lock keeps a second process out.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let trees = Trees::open(path, cache_bytes)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                cache_bytes,
                current: RwLock::new(Some(Arc::new(trees))),
                failed: AtomicBool::new(false),
                reopens: AtomicU64::new(0),
            }),
        })
    }

    fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        let cur = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        cur.clone().ok_or(StoreError::Unavailable)
    }

    fn set_current(&self, trees: Option<Arc<Trees>>) -> Option<Arc<Trees>> {
        let mut cur = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *cur, trees)
    }

    /// Runs `f` on the open database and notes an I/O error.
    fn with<T>(&self, f: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let trees = self.trees()?;
        self.note(f(&trees))
    }

    /// Holds the open database for calls that must all reach the same one: the committer
    /// applies a group and flushes it through one `Pinned`, so that a reopen in between can
    /// never make a flush of the new database answer for writes made to the old one. A reopen
    /// waits (bounded) until the handle is dropped.
    pub fn pin(&self) -> Result<Pinned<'_>, StoreError> {
        Ok(Pinned {
            store: self,
            trees: self.trees()?,
        })
    }

    /// Notes the first I/O error of an operation's result.
    fn note<T>(&self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &out {
            if e.is_io() && !self.shared.failed.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    path = %self.shared.path.display(),
                    error = %e,
                    "delay store: I/O error; writes fail until the database is reopened"
                );
            }
        }
        out
    }

    /// True after an I/O error, until a `reopen` succeeds.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Successful reopens so far.
    pub fn reopens(&self) -> u64 {
        self.shared.reopens.load(Ordering::Relaxed)
    }

    /// Closes the database and opens it again, then proves it writable with one flushed write.
    /// Operations still holding the old handle get up to `release` to finish (sled keeps its
    /// file lock until the last handle is gone). On failure the store stays closed (calls
    /// answer `Unavailable`) and `is_failed` stays true; call again later.
    pub fn reopen(&self, release: Duration) -> Result<(), StoreError> {
        if let Some(mut old) = self.set_current(None) {
            let until = Instant::now() + release;
            loop {
                match Arc::try_unwrap(old) {
                    // Dropping the last handle closes sled's files (its flush on drop gives up
                    // at once in the error state).
                    Ok(trees) => {
                        drop(trees);
                        break;
                    }
                    Err(back) if Instant::now() >= until => {
                        // Still in use: keep it (reads may still work) and try again later.
                        self.set_current(Some(back));
                        return Err(StoreError::Unavailable);
                    }
                    Err(back) => {
                        old = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        let trees = Trees::open(&self.shared.path, self.shared.cache_bytes)?;
        trees.set_meta(PROBE_KEY, &crate::commit::chrono_now_ms().to_be_bytes())?;
        trees.flush()?;
        self.set_current(Some(Arc::new(trees)));
        self.shared.failed.store(false, Ordering::Release);
        self.shared.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.with(Trees::flush)
    }

    /// Applies one mutation in one multi-tree transaction.
    pub fn apply(&self, m: &Mutation) -> Result<Applied, StoreError> {
        self.with(|t| t.apply(m))
    }

    /// Applies a group of mutations in one multi-tree transaction (trims run outside it).
    /// One transaction per group costs far less than one per mutation; a group that fails is
    /// retried mutation by mutation by the caller so one bad record cannot fail the others.
    pub fn apply_group(&self, ms: &[&Mutation]) -> Result<Vec<Applied>, StoreError> {
        self.with(|t| t.apply_group(ms))
    }

    /// The pending record of a canonical id.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.with(|t| t.record(id))
    }

    /// The last cluster-journal offset applied, if any.
    pub fn journal_offset(&self) -> Result<Option<u64>, StoreError> {
        self.with(|t| t.journal_offset())
    }

    /// The done entry of a canonical id.
    pub fn done(&self, id: &str) -> Result<Option<DoneEntry>, StoreError> {
        self.with(|t| t.done(id))
    }

    /// Dead letters of one id.
    pub fn dead_of(&self, id: &str) -> Result<Vec<DeadLetter>, StoreError> {
        self.with(|t| t.dead_of(id))
    }

    /// All dead letters (optionally of one topic), oldest first, at most `limit`.
    pub fn dead_letters(
        &self,
        topic: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.with(|t| t.dead_letters(topic, limit))
    }

    /// Removes one dead letter; returns it.
    pub fn take_dead(&self, id: &str, k: u64) -> Result<Option<DeadLetter>, StoreError> {
        self.with(|t| t.take_dead(id, k))
    }

    /// Number of dead letters (0 while the store is closed).
    pub fn dead_count(&self) -> usize {
        self.trees().map_or(0, |t| t.dead_count())
    }

    /// `due` entries from `from_ms` (inclusive) up to `to_ms` (exclusive), at most `limit`.
    pub fn due_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|t| t.due_range(from_ms, to_ms, limit))
    }

    /// `due` entries with keys from `from` (inclusive) up to `end` (exclusive), at most `limit`.
    pub fn due_after(
        &self,
        from: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|t| t.due_after(from, end, limit))
    }

    /// Stores (or replaces) a dead letter.
    pub fn put_dead(&self, d: &DeadLetter) -> Result<(), StoreError> {
        self.with(|t| t.put_dead(d))
    }

    /// Earliest pending due time.
    pub fn first_due(&self) -> Result<Option<i64>, StoreError> {
        self.with(Trees::first_due)
    }

    /// Number of pending records: the stored counter, or a walk of the records (once, for a
    /// database written before the counter existed).
    pub fn count_pending(&self) -> Result<i64, StoreError> {
        self.with(Trees::count_pending)
    }

    /// Writes a meta value.
    pub fn set_meta(&self, name: &str, v: &[u8]) -> Result<(), StoreError> {
        self.with(|t| t.set_meta(name, v))
    }

    /// Reads a meta value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|t| t.meta(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{to_ms, DelayId};

    fn rec(dtype: i64, ts: i64, times: i64, interval: i64) -> Record {
        Record {
            topic: "t".into(),
            tags: None,
            properties: vec![],
            body: b"b".to_vec(),
            id: DelayId {
                timestamp: ts,
                dtype,
                expire: ts + 172_800,
                times,
                timed: 0,
                interval,
                seq: 0,
                uuid: "14f22520-ad72-11e7-91be-6ee54da579e3".into(),
            },
            next_index: 0,
            next_due_ms: to_ms(ts),
            attempts: 0,
            first_failure_ms: 0,
            created_ms: 0,
            owner: String::new(),
            caught_up: 0,
        }
    }

    const CU: CatchUp = CatchUp {
        skip: true,
        late_tolerance_ms: 1000,
        max_catch_up: 100,
    };

    #[test]
    fn add_is_idempotent_and_cancel_is_topic_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let add = Mutation::Add {
            id: id.clone(),
            record: Box::new(r.clone()),
        };
        assert_eq!(
            s.apply(&add).unwrap(),
            Applied::Added {
                due_ms: 1_700_000_000_000
            }
        );
        assert_eq!(s.apply(&add).unwrap(), Applied::AddExisting);
        assert_eq!(
            s.due_range(0, i64::MAX, 10).unwrap(),
            vec![(1_700_000_000_000, id.clone())]
        );
        let cancel = |topic: &str| Mutation::Cancel {
            id: id.clone(),
            topic: topic.into(),
            at_ms: 5,
            principal: None,
        };
        assert_eq!(
            s.apply(&cancel("other")).unwrap(),
            Applied::Cancel(CancelResult::TopicMismatch)
        );
        assert_eq!(
            s.apply(&cancel("t")).unwrap(),
            Applied::Cancel(CancelResult::Cancelled)
        );
        assert_eq!(
            s.apply(&cancel("t")).unwrap(),
            Applied::Cancel(CancelResult::AfterFinish)
        );
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            s.apply(&add).unwrap(),
            Applied::AddExisting,
            "a late add stays cancelled"
        );
        let unknown = Mutation::Cancel {
            id: "x".into(),
            topic: "t".into(),
            at_ms: 6,
            principal: None,
        };
        assert_eq!(
            s.apply(&unknown).unwrap(),
            Applied::Cancel(CancelResult::Unknown)
        );
        assert_eq!(s.done("x").unwrap().unwrap().state, Final::CancelledUnknown);
    }

    #[test]
    fn journaled_mutations_store_their_offset_in_the_same_group() {
        let dir = tempfile::tempdir().unwrap();
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        {
            let s = Store::open(dir.path(), 16 << 20).unwrap();
            assert_eq!(s.journal_offset().unwrap(), None);
            let add = Mutation::Journaled {
                offset: 41,
                inner: Box::new(Mutation::Add {
                    id: id.clone(),
                    record: Box::new(r.clone()),
                }),
            };
            let cancel = Mutation::Journaled {
                offset: 42,
                inner: Box::new(Mutation::Cancel {
                    id: id.clone(),
                    topic: r.topic.clone(),
                    at_ms: 1,
                    principal: None,
                }),
            };
            let out = s.apply_group(&[&add, &cancel]).unwrap();
            assert_eq!(
                out,
                vec![
                    Applied::Added {
                        due_ms: r.next_due_ms
                    },
                    Applied::Cancel(CancelResult::Cancelled)
                ]
            );
            s.flush().unwrap();
        }
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(s.journal_offset().unwrap(), Some(42));
        assert!(s.record(&id).unwrap().is_none(), "the cancel was applied");
        assert_eq!(s.count_pending().unwrap(), 0);
        // A tombstone forgets a pending record without firing it, and is idempotent.
        let r2 = rec(2, 1_700_000_100, 0, 0);
        let id2 = r2.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id2.clone(),
            record: Box::new(r2),
        })
        .unwrap();
        let forget = Mutation::Forget {
            id: id2.clone(),
            at_ms: 5,
        };
        assert_eq!(s.apply(&forget).unwrap(), Applied::Finished(Final::Fired));
        assert_eq!(s.apply(&forget).unwrap(), Applied::Stale);
        assert!(s.record(&id2).unwrap().is_none());
        assert!(s.first_due().unwrap().is_none(), "no due entry left");
        assert_eq!(s.count_pending().unwrap(), 0);
    }

    #[test]
    fn completions_advance_loops_retry_and_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        let r = rec(3, 1_700_000_000, 3, 10);
        let id = r.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        })
        .unwrap();
        let complete = |k, end, now_ms| Mutation::Complete {
            id: id.clone(),
            k,
            end,
            now_ms,
            catch_up: CU,
        };
        let t0 = 1_700_000_000_000;
        assert_eq!(
            s.apply(&complete(0, FireEnd::Retry { at_ms: t0 + 100 }, t0))
                .unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 100,
                skipped: 0,
                dead: false
            }
        );
        assert_eq!(s.record(&id).unwrap().unwrap().attempts, 1);
        assert_eq!(
            s.apply(&complete(0, FireEnd::Ok, t0 + 200)).unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 10_000,
                skipped: 0,
                dead: false
            }
        );
        assert_eq!(
            s.apply(&complete(0, FireEnd::Ok, t0 + 200)).unwrap(),
            Applied::Stale
        );
        let dead = FireEnd::Dead {
            code: 11,
            msg: "bad".into(),
        };
        assert_eq!(
            s.apply(&complete(1, dead, t0 + 10_000)).unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 20_000,
                skipped: 0,
                dead: true
            }
        );
        assert_eq!(s.dead_of(&id).unwrap()[0].k, 1);
        assert_eq!(
            s.apply(&complete(2, FireEnd::Ok, t0 + 20_000)).unwrap(),
            Applied::Finished(Final::Completed)
        );
        assert!(s.record(&id).unwrap().is_none());
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
        // trim by retention
        assert_eq!(
            s.apply(&Mutation::Trim {
                before_ms: t0 + 30_000,
                dead_before_ms: t0 + 30_000,
                limit: 100
            })
            .unwrap(),
            Applied::Trimmed(2)
        );
        assert!(s.done(&id).unwrap().is_none());
        assert_eq!(s.dead_count(), 0);
    }

    /// Opens a store in `dir`, adds one record, flushes and closes it: (record, id).
    fn closed_store_with_one_add(dir: &std::path::Path) -> (Record, String) {
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let s = Store::open(dir, 16 << 20).unwrap();
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r.clone()),
        })
        .unwrap();
        s.flush().unwrap();
        (r, id)
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = closed_store_with_one_add(dir.path());
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(s.record(&id).unwrap(), Some(r));
        assert_eq!(s.count_pending().unwrap(), 1);
        assert_eq!(s.first_due().unwrap(), Some(1_700_000_000_000));
    }

    #[test]
    fn an_unfinished_snapshot_does_not_make_the_store_unopenable() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = closed_store_with_one_add(dir.path());
        // What a snapshot write on a full disk leaves behind (issue #7 part 6).
        let leftover = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&leftover, b"").unwrap();
        let raw = sled::Config::new().path(dir.path()).open();
        assert!(
            matches!(raw, Err(sled::Error::Corruption { .. })),
            "sled itself refuses the directory: {:?}",
            raw.err()
        );
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(s.record(&id).unwrap(), Some(r));
        assert!(!leftover.exists());
    }

    #[test]
    fn trim_reads_group_and_per_id_time_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        let t0 = 1_700_000_000_000;
        let mut adds = vec![];
        let mut ids = vec![];
        for i in 0..3 {
            let r = rec(2, 1_700_000_000 + i, 0, 0);
            let id = r.occurrence_id(0);
            adds.push(Mutation::Add {
                id: id.clone(),
                record: Box::new(r),
            });
            ids.push(id);
        }
        let refs: Vec<&Mutation> = adds.iter().collect();
        s.apply_group(&refs).unwrap();
        let done: Vec<Mutation> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Mutation::Complete {
                id: id.clone(),
                k: 0,
                end: FireEnd::Ok,
                now_ms: t0 + i as i64,
                catch_up: CU,
            })
            .collect();
        let refs: Vec<&Mutation> = done.iter().collect();
        s.apply_group(&refs).unwrap();
        assert_eq!(
            s.trees().unwrap().done_by_time.len(),
            1,
            "one time entry per group"
        );
        // An entry as older stores wrote it: finished ms ‖ id, empty value.
        let old = Mutation::Cancel {
            id: "old".into(),
            topic: "t".into(),
            at_ms: t0,
            principal: None,
        };
        s.apply(&old).unwrap();
        assert!(s
            .trees()
            .unwrap()
            .done_by_time
            .remove(group_time_key(t0, "old"))
            .unwrap()
            .is_some());
        s.trees()
            .unwrap()
            .done_by_time
            .insert(due_key(t0, "old"), &[])
            .unwrap();
        // Not yet past retention for the latest id of the group: nothing goes.
        let trim = |before_ms| Mutation::Trim {
            before_ms,
            dead_before_ms: 0,
            limit: 100,
        };
        assert_eq!(s.apply(&trim(t0 + 2)).unwrap(), Applied::Trimmed(1));
        assert!(s.done("old").unwrap().is_none());
        assert!(s.done(&ids[0]).unwrap().is_some());
        assert_eq!(s.apply(&trim(t0 + 3)).unwrap(), Applied::Trimmed(3));
        for id in &ids {
            assert!(s.done(id).unwrap().is_none());
        }
        assert_eq!(s.trees().unwrap().done_by_time.len(), 0);
    }

    #[test]
    fn a_group_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let add = Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        };
        let cancel = Mutation::Cancel {
            id: id.clone(),
            topic: "t".into(),
            at_ms: 1,
            principal: None,
        };
        let out = s.apply_group(&[&add, &add, &cancel, &add]).unwrap();
        assert_eq!(
            out,
            vec![
                Applied::Added {
                    due_ms: 1_700_000_000_000
                },
                Applied::AddExisting,
                Applied::Cancel(CancelResult::Cancelled),
                Applied::AddExisting,
            ]
        );
        assert_eq!(s.count_pending().unwrap(), 0);
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn cancel_is_bound_to_the_adding_principal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16 << 20).unwrap();
        let mut r = rec(2, 1_700_000_000, 0, 0);
        r.owner = "alice".into();
        let id = r.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        })
        .unwrap();
        let cancel = |p: Option<&str>| Mutation::Cancel {
            id: id.clone(),
            topic: "t".into(),
            at_ms: 5,
            principal: p.map(str::to_string),
        };
        assert_eq!(
            s.apply(&cancel(Some("bob"))).unwrap(),
            Applied::Cancel(CancelResult::NotOwner)
        );
        assert_eq!(
            s.due_range(0, i64::MAX, 10).unwrap().len(),
            1,
            "still pending"
        );
        assert_eq!(
            s.apply(&cancel(Some("alice"))).unwrap(),
            Applied::Cancel(CancelResult::Cancelled)
        );
    }
}
