//! One opening of the database: every read and write of the store, written once.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::mutate;
use super::schema::{
    dead_key, decode_dead, due_key, encode_dead, split_due_key, JOURNAL_OFFSET_KEY, PENDING_KEY,
};
use super::types::{Applied, DeadLetter, DoneEntry, Mutation};
use super::Health;
use crate::error::StoreError;
use crate::kv::{EngineKind, Entry, Kv, TreeId, TxBody};
use crate::record::Record;
use TreeId::{Dead, Done, Due, Meta, Records};

/// One opening of the database, of either engine. The store hands out one `Arc<Db>` per
/// opening (`Store::db`); a reopen replaces it.
pub struct Db {
    pub(super) kv: Noted,
    /// No `due` entry is below this time (ms): `first_due` seeks here instead of walking from
    /// the first key. In an LSM tree (fjall, removed in issue 17) the front of the time index
    /// was a long run of deletion markers of fired entries that a walk from the first key would
    /// step over on every group commit; the seek is kept, as it costs nothing on the others.
    front_ms: AtomicI64,
}

impl Db {
    /// Opens (or creates) the database with the engine `kind`; the engine's lock keeps a second
    /// process out. Every engine failure is noted in `health`.
    pub(super) fn open(
        path: &Path,
        cache_bytes: u64,
        kind: EngineKind,
        health: Arc<Health>,
    ) -> Result<Db, StoreError> {
        Ok(Db {
            kv: Noted {
                kv: crate::kv::open(kind, path, cache_bytes)?,
                health,
            },
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
        self.apply_group_with(ms, None)
    }

    /// `apply_group`, storing the fired-through watermark in the same transaction: derived
    /// from `first_due_before`, what `first_due` answered before the group, so the committer
    /// needs no transaction of its own for it.
    pub fn apply_group_marked(
        &self,
        ms: &[&Mutation],
        first_due_before: Option<i64>,
    ) -> Result<Vec<Applied>, StoreError> {
        self.apply_group_with(ms, Some(first_due_before))
    }

    fn apply_group_with(
        &self,
        ms: &[&Mutation],
        first_due_before: Option<Option<i64>>,
    ) -> Result<Vec<Applied>, StoreError> {
        if let [Mutation::Trim {
            before_ms,
            dead_before_ms,
            limit,
        }] = ms
        {
            return Ok(vec![mutate::trim(
                &self.kv,
                *before_ms,
                *dead_before_ms,
                *limit,
            )?]);
        }
        let out = std::cell::RefCell::new(Vec::new());
        self.kv.transact(&|ops| {
            *out.borrow_mut() = mutate::apply_group(ops, ms, first_due_before)?;
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

    /// The pending records of several canonical ids, read at one point in time.
    pub fn records(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<Option<Record>, StoreError>>, StoreError> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        Ok(self
            .kv
            .get_many(Records, &keys)?
            .into_iter()
            .map(|v| {
                v.map(|v| Record::decode(&v))
                    .transpose()
                    .map_err(StoreError::from)
            })
            .collect())
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

/// The engine, with every failure noted in the store's health: the first I/O error marks the
/// store failed until it is reopened (`Store::reopen`).
pub(super) struct Noted {
    kv: Box<dyn Kv>,
    health: Arc<Health>,
}

impl Kv for Noted {
    fn transact(&self, body: TxBody<'_>) -> Result<(), StoreError> {
        self.health.note(self.kv.transact(body))
    }

    fn get(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.health.note(self.kv.get(t, k))
    }

    fn get_many(&self, t: TreeId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.health.note(self.kv.get_many(t, keys))
    }

    fn insert(&self, t: TreeId, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.health.note(self.kv.insert(t, k, v))
    }

    fn remove(&self, t: TreeId, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.health.note(self.kv.remove(t, k))
    }

    fn scan(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.health.note(self.kv.scan(t, from, end, visit))
    }

    fn range(
        &self,
        t: TreeId,
        from: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.health.note(self.kv.range(t, from, end, limit))
    }

    fn len(&self, t: TreeId) -> Result<usize, StoreError> {
        self.health.note(self.kv.len(t))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.health.note(self.kv.flush())
    }
}
