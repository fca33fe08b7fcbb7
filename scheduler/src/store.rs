//! The durable store: records, time index, final states and dead letters in six trees,
//! mutated in multi-tree transactions (delay.md §8.1), over one of the engines of `kv/`.
//!
//! Every call here blocks on the engine; the scheduler calls them from the committer thread or
//! a blocking-pool thread, never from the async runtime's workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use crate::error::StoreError;
pub use crate::kv::EngineKind;
use crate::kv::{Kv, TreeId, TxFail, TxOps};
use crate::record::{Corrupt, Record};

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

/// One opening of the database, of either engine.
struct Trees {
    kv: Box<dyn Kv>,
    /// No `due` entry is below this time (ms): `first_due` seeks here instead of walking from
    /// the first key. In an LSM tree (fjall, removed in issue 17) the front of the time index
    /// was a long run of deletion markers of fired entries that a walk from the first key would
    /// step over on every group commit; the seek is kept, as it costs nothing on the others.
    front_ms: AtomicI64,
}

use TreeId::{Dead, Done, DoneByTime, Due, Meta, Records};

/// The body of a group transaction: applies `ms` through `ops`.
fn apply_body(ops: &mut dyn TxOps, ms: &[&Mutation]) -> Result<Vec<Applied>, TxFail> {
    // Ids finished by this group: indexed for trimming by one `done_by_time` entry per group
    // instead of one per id (one write fewer per completion).
    let mut finished: Vec<(i64, String)> = Vec::new();
    let mut out = Vec::with_capacity(ms.len());
    for m in ms {
        match m {
            Mutation::Journaled { offset, inner } => {
                out.push(apply_one(ops, inner, &mut finished)?);
                ops.insert(Meta, JOURNAL_OFFSET_KEY, &offset.to_be_bytes())?;
            }
            m => out.push(apply_one(ops, m, &mut finished)?),
        }
    }
    if let Some(max_ms) = finished.iter().map(|(ms, _)| *ms).max() {
        // Keyed by the latest finish time of the group, so trimming reaches the entry only
        // once every id in it is past retention.
        let key = group_time_key(max_ms, &finished[0].1);
        let mut v = ops.get(DoneByTime, &key)?.unwrap_or_default();
        for (_, id) in &finished {
            v.extend_from_slice(&(id.len() as u32).to_be_bytes());
            v.extend_from_slice(id.as_bytes());
        }
        ops.insert(DoneByTime, &key, &v)?;
    }
    Ok(out)
}

/// The pending count lives in the same transactions that change it, so it is exact after any
/// crash and start-up never has to walk the records.
fn bump(ops: &mut dyn TxOps, delta: i64) -> Result<(), TxFail> {
    let cur = ops
        .get(Meta, PENDING_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, i64::from_be_bytes);
    ops.insert(Meta, PENDING_KEY, &(cur + delta).to_be_bytes())
}

fn finish(
    ops: &mut dyn TxOps,
    finished: &mut Vec<(i64, String)>,
    id: &str,
    entry: &DoneEntry,
) -> Result<(), TxFail> {
    ops.insert(Done, id.as_bytes(), &entry.encode())?;
    finished.push((entry.finished_ms, id.to_string()));
    Ok(())
}

/// Removes a pending record (its record and its `due` entry) and stores its final state.
fn retire(
    ops: &mut dyn TxOps,
    finished: &mut Vec<(i64, String)>,
    id: &str,
    rec: &Record,
    entry: &DoneEntry,
) -> Result<(), TxFail> {
    ops.remove(Records, id.as_bytes())?;
    ops.remove(Due, &due_key(rec.next_due_ms, id))?;
    bump(ops, -1)?;
    finish(ops, finished, id, entry)
}

fn apply_one(
    ops: &mut dyn TxOps,
    m: &Mutation,
    finished: &mut Vec<(i64, String)>,
) -> Result<Applied, TxFail> {
    match m {
        Mutation::Add { id, record } => {
            if ops.get(Records, id.as_bytes())?.is_some() || ops.get(Done, id.as_bytes())?.is_some()
            {
                return Ok(Applied::AddExisting);
            }
            ops.insert(Records, id.as_bytes(), &record.encode())?;
            ops.insert(Due, &due_key(record.next_due_ms, id), &[])?;
            bump(ops, 1)?;
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
            if let Some(raw) = ops.get(Records, id.as_bytes())? {
                let rec = Record::decode(&raw)?;
                if rec.topic != *topic {
                    return Ok(Applied::Cancel(CancelResult::TopicMismatch));
                }
                // Records added without ACLs have no owner: any allowed client may cancel them.
                if let Some(p) = principal {
                    if !rec.owner.is_empty() && rec.owner != *p {
                        return Ok(Applied::Cancel(CancelResult::NotOwner));
                    }
                }
                retire(
                    ops,
                    finished,
                    id,
                    &rec,
                    &DoneEntry {
                        state: Final::Cancelled,
                        finished_ms: *at_ms,
                        last_index: rec.next_index,
                        cancels: vec![(*at_ms, CancelResult::Cancelled)],
                    },
                )?;
                return Ok(Applied::Cancel(CancelResult::Cancelled));
            }
            if let Some(raw) = ops.get(Done, id.as_bytes())? {
                let mut entry = DoneEntry::decode(&raw)?;
                let result = if entry.state == Final::CancelledUnknown {
                    CancelResult::Unknown
                } else {
                    CancelResult::AfterFinish
                };
                if entry.cancels.len() < MAX_CANCELS_KEPT {
                    entry.cancels.push((*at_ms, result));
                }
                ops.insert(Done, id.as_bytes(), &entry.encode())?;
                return Ok(Applied::Cancel(result));
            }
            finish(
                ops,
                finished,
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
            let Some(raw) = ops.get(Records, id.as_bytes())? else {
                return Ok(Applied::Stale);
            };
            let mut rec = Record::decode(&raw)?;
            if rec.next_index != *k {
                return Ok(Applied::Stale);
            }
            let old_due = due_key(rec.next_due_ms, id);
            let dead = matches!(end, FireEnd::Dead { .. });
            if let FireEnd::Dead { code, msg } = end {
                ops.insert(
                    Dead,
                    &dead_key(id, *k),
                    &encode_dead(&rec, *code, msg, *now_ms),
                )?;
            }
            if let FireEnd::Retry { at_ms } = end {
                rec.attempts += 1;
                if rec.first_failure_ms == 0 {
                    rec.first_failure_ms = *now_ms;
                }
                rec.next_due_ms = *at_ms;
                ops.remove(Due, &old_due)?;
                ops.insert(Due, &due_key(rec.next_due_ms, id), &[])?;
                ops.insert(Records, id.as_bytes(), &rec.encode())?;
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
            match next {
                Some((n, skipped, caught_up)) => {
                    ops.remove(Due, &old_due)?;
                    rec.next_index = n;
                    rec.caught_up = caught_up;
                    rec.next_due_ms = rec.due_ms(n);
                    rec.attempts = 0;
                    rec.first_failure_ms = 0;
                    ops.insert(Due, &due_key(rec.next_due_ms, id), &[])?;
                    ops.insert(Records, id.as_bytes(), &rec.encode())?;
                    Ok(Applied::Rescheduled {
                        due_ms: rec.next_due_ms,
                        skipped,
                        dead,
                    })
                }
                None => {
                    let state = match (rec.kind(), dead) {
                        (crate::record::Kind::Once, true) => Final::Dead,
                        (crate::record::Kind::Once, false) => Final::Fired,
                        _ => Final::Completed,
                    };
                    retire(
                        ops,
                        finished,
                        id,
                        &rec,
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
            let Some(raw) = ops.get(Records, id.as_bytes())? else {
                return Ok(Applied::Stale);
            };
            let rec = Record::decode(&raw)?;
            let state = match rec.kind() {
                crate::record::Kind::Once => Final::Fired,
                _ => Final::Completed,
            };
            retire(
                ops,
                finished,
                id,
                &rec,
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
}

impl Trees {
    /// Opens (or creates) the database with the engine `kind`; the engine's lock keeps a second
    /// process out.
    fn open(path: &Path, cache_bytes: u64, kind: EngineKind) -> Result<Trees, StoreError> {
        Ok(Trees {
            kv: crate::kv::open(kind, path, cache_bytes)?,
            front_ms: AtomicI64::new(0),
        })
    }

    /// Makes everything written so far durable on the device.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush()
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
        let out = std::cell::RefCell::new(Vec::new());
        self.kv.transact(&|ops| {
            *out.borrow_mut() = apply_body(ops, ms)?;
            Ok(())
        })?;
        let out = out.into_inner();
        // Every `due` entry written by the group is reported with its time: lower the front.
        let lowest = out
            .iter()
            .filter_map(|a| match a {
                Applied::Added { due_ms } | Applied::Rescheduled { due_ms, .. } => Some(*due_ms),
                _ => None,
            })
            .min();
        if let Some(low) = lowest {
            self.front_ms.fetch_min(low.max(0), Ordering::AcqRel);
        }
        Ok(out)
    }

    fn trim(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        limit: usize,
    ) -> Result<Applied, StoreError> {
        let mut n = 0;
        let end = due_key(before_ms, "");
        for (k, v) in self.kv.range(DoneByTime, &[], Some(&end), limit)? {
            if n >= limit {
                break;
            }
            // An empty value is a per-id entry (finished ms ‖ id, older stores); otherwise the
            // value lists the ids a group finished.
            let ids = if v.is_empty() {
                split_due_key(&k).map(|(_, id)| id).into_iter().collect()
            } else {
                split_id_list(&v)?
            };
            for id in ids {
                // A re-finished id has a newer time entry: only delete when this one is current.
                if let Some(raw) = self.kv.get(Done, id.as_bytes())? {
                    if DoneEntry::decode(&raw)?.finished_ms < before_ms {
                        self.kv.remove(Done, id.as_bytes())?;
                    }
                }
                n += 1;
            }
            self.kv.remove(DoneByTime, &k)?;
        }
        // `dead` is small (dead letters are kept for days, not millions): a scan is fine. Only
        // the keys of stale entries are kept (a value holds the whole record, body included).
        let mut stale = Vec::new();
        self.kv.scan(Dead, &[], None, &mut |k, v| {
            if let Some(a) = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                if i64::from_be_bytes(a) < dead_before_ms {
                    stale.push(k.to_vec());
                }
            }
            stale.len() < limit
        })?;
        for k in stale {
            self.kv.remove(Dead, &k)?;
            n += 1;
        }
        Ok(Applied::Trimmed(n))
    }

    /// The pending record of a canonical id.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(match self.kv.get(Records, id.as_bytes())? {
            Some(v) => Some(Record::decode(&v)?),
            None => None,
        })
    }

    /// The done entry of a canonical id.
    pub fn done(&self, id: &str) -> Result<Option<DoneEntry>, StoreError> {
        Ok(match self.kv.get(Done, id.as_bytes())? {
            Some(v) => Some(DoneEntry::decode(&v)?),
            None => None,
        })
    }

    /// Dead letters of one id.
    pub fn dead_of(&self, id: &str) -> Result<Vec<DeadLetter>, StoreError> {
        // Keys are id ‖ 0 ‖ occurrence: the range [id ‖ 0, id ‖ 1) holds exactly this id's.
        let mut from = id.as_bytes().to_vec();
        from.push(0);
        let mut end = id.as_bytes().to_vec();
        end.push(1);
        self.kv
            .range(Dead, &from, Some(&end), usize::MAX)?
            .into_iter()
            .map(|(k, v)| Ok(decode_dead(&k, &v)?))
            .collect()
    }

    /// All dead letters (optionally of one topic), oldest first, at most `limit`.
    pub fn dead_letters(
        &self,
        topic: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.kv.range(Dead, &[], None, usize::MAX)? {
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
        Ok(match self.kv.remove(Dead, &key)? {
            Some(v) => Some(decode_dead(&key, &v)?),
            None => None,
        })
    }

    /// Number of dead letters.
    pub fn dead_count(&self) -> usize {
        self.kv.len(Dead).unwrap_or(0)
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
        Ok(self
            .kv
            .range(Due, from, Some(end), limit)?
            .into_iter()
            .filter_map(|(k, _)| split_due_key(&k))
            .collect())
    }

    /// Stores (or replaces) a dead letter.
    pub fn put_dead(&self, d: &DeadLetter) -> Result<(), StoreError> {
        self.kv.insert(
            Dead,
            &dead_key(&d.id, d.k),
            &encode_dead(&d.record, d.code, &d.msg, d.dead_ms),
        )
    }

    /// Earliest pending due time.
    pub fn first_due(&self) -> Result<Option<i64>, StoreError> {
        let front = self.front_ms.load(Ordering::Acquire);
        let first = match self.kv.range(Due, &due_key(front, ""), None, 1)?.first() {
            Some((k, _)) => split_due_key(k).map(|(d, _)| d),
            None => None,
        };
        if let Some(d) = first {
            // Only if no write lowered the front meanwhile.
            let _ = self
                .front_ms
                .compare_exchange(front, d, Ordering::AcqRel, Ordering::Acquire);
        }
        Ok(first)
    }

    /// Number of pending records: the stored counter, or a walk of the records (once, for a
    /// database written before the counter existed).
    pub fn count_pending(&self) -> Result<i64, StoreError> {
        if let Some(v) = self.kv.get(Meta, PENDING_KEY)? {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
                return Ok(i64::from_be_bytes(b));
            }
        }
        let n = self.kv.len(Records)? as i64;
        self.kv.insert(Meta, PENDING_KEY, &n.to_be_bytes())?;
        Ok(n)
    }

    /// Writes a meta value.
    pub fn set_meta(&self, name: &str, v: &[u8]) -> Result<(), StoreError> {
        self.kv.insert(Meta, name.as_bytes(), v)
    }

    /// Reads a meta value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(Meta, name.as_bytes())
    }

    /// The last cluster-journal offset applied (`Mutation::Journaled`), if any.
    pub fn journal_offset(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .kv
            .get(Meta, JOURNAL_OFFSET_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes))
    }
}

/// The durable store: a handle shared by the committer, the loader and the fire path.
///
/// Both engines keep the first I/O error of their log writer (ENOSPC, EROFS, EIO) and fail every
/// later write with it, even after the disk has space again (sled's error state, the redb
/// engine's broken redo log); only opening the database again clears it. The store therefore notes the
/// first I/O error (`is_failed`) and `reopen` closes and re-opens the database in place; while
/// it is closed every call answers `StoreError::Unavailable`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    cache_bytes: u64,
    kind: EngineKind,
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
    pub fn flush(&self) -> Result<(), StoreError> {
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
    /// Opens the store in `path` with the engine that already holds it, or creates one with
    /// the default engine; the engine's lock keeps a second process out.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Self::open_with(path, cache_bytes, EngineKind::default())
    }

    /// Opens the store in `path`, creating it with `wanted` when the directory holds none. A
    /// directory that already holds a store of the other engine is opened with that engine
    /// (with a warning): pending messages are never left behind by a setting change.
    pub fn open_with(
        path: &Path,
        cache_bytes: u64,
        wanted: EngineKind,
    ) -> Result<Store, StoreError> {
        let kind = match EngineKind::detect(path)? {
            Some(found) if found != wanted => {
                tracing::warn!(
                    path = %path.display(),
                    configured = wanted.name(),
                    found = found.name(),
                    "delay store: the data directory holds a store of another engine; opening \
                     it with that engine (move the directory away to start a new one)"
                );
                found
            }
            Some(found) => found,
            None => wanted,
        };
        let trees = Trees::open(path, cache_bytes, kind)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                cache_bytes,
                kind,
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
        let trees = Trees::open(&self.shared.path, self.shared.cache_bytes, self.shared.kind)?;
        trees.set_meta(PROBE_KEY, &crate::commit::chrono_now_ms().to_be_bytes())?;
        trees.flush()?;
        self.set_current(Some(Arc::new(trees)));
        self.shared.failed.store(false, Ordering::Release);
        self.shared.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The engine holding this store.
    pub fn engine(&self) -> EngineKind {
        self.shared.kind
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
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

    /// Runs the tests inside once per engine (`KIND`).
    macro_rules! on_each_engine {
        ($($body:tt)*) => {
            mod sled_engine {
                use super::*;
                const KIND: EngineKind = EngineKind::Sled;
                $($body)*
            }
            mod redb_engine {
                use super::*;
                const KIND: EngineKind = EngineKind::Redb;
                $($body)*
            }
        };
    }

    fn closed_store_with_one_add(dir: &std::path::Path, kind: EngineKind) -> (Record, String) {
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let s = Store::open_with(dir, 16 << 20, kind).unwrap();
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r.clone()),
        })
        .unwrap();
        s.flush().unwrap();
        (r, id)
    }

    #[test]
    fn an_unfinished_snapshot_does_not_make_the_store_unopenable() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = closed_store_with_one_add(dir.path(), EngineKind::Sled);
        // What a snapshot write on a full disk leaves behind (issue #7 part 6).
        let leftover = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&leftover, b"").unwrap();
        let raw = sled::Config::new().path(dir.path()).open();
        assert!(
            matches!(raw, Err(sled::Error::Corruption { .. })),
            "sled itself refuses the directory: {:?}",
            raw.err()
        );
        let s = Store::open_with(dir.path(), 16 << 20, EngineKind::Redb).unwrap();
        assert_eq!(
            s.engine(),
            EngineKind::Sled,
            "an existing store keeps its engine"
        );
        assert_eq!(s.record(&id).unwrap(), Some(r));
        assert!(!leftover.exists());
    }

    #[test]
    fn a_store_written_by_fjall_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keyspaces")).unwrap();
        let err = Store::open_with(dir.path(), 16 << 20, EngineKind::Redb)
            .err()
            .expect("refused");
        assert!(matches!(err, StoreError::Fjall(_)), "{err}");
        assert!(err.to_string().contains("fjall"), "{err}");
        assert!(
            !dir.path().join("store.redb").exists(),
            "nothing created beside it"
        );
    }

    on_each_engine! {
        #[test]
        fn add_is_idempotent_and_cancel_is_topic_bound() {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
                let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
        #[test]
        fn data_survives_reopen() {
            let dir = tempfile::tempdir().unwrap();
            let (r, id) = closed_store_with_one_add(dir.path(), KIND);
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
            assert_eq!(s.record(&id).unwrap(), Some(r));
            assert_eq!(s.count_pending().unwrap(), 1);
            assert_eq!(s.first_due().unwrap(), Some(1_700_000_000_000));
        }

        #[test]
        fn trim_reads_group_and_per_id_time_entries() {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
                s.trees().unwrap().kv.len(TreeId::DoneByTime).unwrap(),
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
            let kv = &s.trees().unwrap().kv;
            assert!(kv
                .remove(TreeId::DoneByTime, &group_time_key(t0, "old"))
                .unwrap()
                .is_some());
            kv.insert(TreeId::DoneByTime, &due_key(t0, "old"), &[])
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
            assert_eq!(s.trees().unwrap().kv.len(TreeId::DoneByTime).unwrap(), 0);
        }

        #[test]
        fn a_group_sees_its_own_writes() {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
            let s = Store::open_with(dir.path(), 16 << 20, KIND).unwrap();
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
}
