//! The mutations: one function per kind, run inside the group's transaction (`apply_group`),
//! and the trim, which runs outside one.

use super::schema::{
    dead_key, due_key, encode_dead, group_time_key, split_due_key, split_id_list,
    FIRED_THROUGH_KEY, JOURNAL_OFFSET_KEY, MAX_CANCELS_KEPT, PENDING_KEY,
};
use super::types::{Applied, CancelResult, DoneEntry, Final, FireEnd, Mutation};
use crate::config::CatchUp;
use crate::error::StoreError;
use crate::kv::{Kv, TreeId, TxFail, TxOps};
use crate::record::{Kind, Record};
use TreeId::{Dead, Done, DoneByTime, Due, Meta, Records};

/// One group transaction: its reads and writes, and the ids it finished.
struct Tx<'a> {
    ops: &'a mut dyn TxOps,
    /// Ids finished by this group: indexed for trimming by one `done_by_time` entry per group
    /// instead of one per id (one write fewer per completion).
    finished: Vec<(i64, String)>,
    /// Change of the pending count: written once per group, not once per add or completion.
    pending_delta: i64,
    /// Earliest `due` entry this group wrote.
    lowest_due: Option<i64>,
}

/// The body of a group transaction: applies `ms` through `ops`. With `Some(first_due_before)`
/// (the earliest due time before the group; `None` inside when nothing was pending) it also
/// stores the fired-through watermark (delay.md §8.5) in the same transaction: the earlier of
/// that and every due time the group wrote, less one, which can only be at or below the exact
/// watermark (the group's removals raise it).
pub(super) fn apply_group(
    ops: &mut dyn TxOps,
    ms: &[&Mutation],
    first_due_before: Option<Option<i64>>,
) -> Result<Vec<Applied>, TxFail> {
    let mut tx = Tx {
        ops,
        finished: Vec::new(),
        pending_delta: 0,
        lowest_due: None,
    };
    let mut out = Vec::with_capacity(ms.len());
    for m in ms {
        match m {
            Mutation::Journaled { offset, inner } => {
                out.push(tx.apply(inner)?);
                tx.ops
                    .insert(Meta, JOURNAL_OFFSET_KEY, &offset.to_be_bytes())?;
            }
            m => out.push(tx.apply(m)?),
        }
    }
    tx.index_finished()?;
    tx.write_pending()?;
    let Some(before) = first_due_before else {
        return Ok(out);
    };
    let floor = match (before, tx.lowest_due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(first) = floor {
        tx.ops
            .insert(Meta, FIRED_THROUGH_KEY, &(first - 1).to_be_bytes())?;
    }
    Ok(out)
}

impl Tx<'_> {
    fn apply(&mut self, m: &Mutation) -> Result<Applied, TxFail> {
        match m {
            Mutation::Add { id, record } => self.add(id, record),
            Mutation::Cancel {
                id,
                topic,
                at_ms,
                principal,
            } => self.cancel(id, topic, *at_ms, principal.as_deref()),
            Mutation::Complete {
                id,
                k,
                end,
                now_ms,
                catch_up,
            } => self.complete(id, *k, end, *now_ms, catch_up),
            Mutation::Forget { id, at_ms } => self.forget(id, *at_ms),
            // Trims run outside the group (`Db::apply_group`); a journaled mutation never
            // nests another.
            Mutation::Trim { .. } | Mutation::Journaled { .. } => Ok(Applied::Trimmed(0)),
        }
    }

    /// Stores a new record, unless the id is pending or finished (idempotent by id).
    fn add(&mut self, id: &str, record: &Record) -> Result<Applied, TxFail> {
        if self.ops.get(Records, id.as_bytes())?.is_some()
            || self.ops.get(Done, id.as_bytes())?.is_some()
        {
            return Ok(Applied::AddExisting);
        }
        self.ops.insert(Records, id.as_bytes(), &record.encode())?;
        self.insert_due(record.next_due_ms, id)?;
        self.bump(1);
        Ok(Applied::Added {
            due_ms: record.next_due_ms,
        })
    }

    /// Cancels a pending id of `topic` (and of `principal`, when given), or records the
    /// attempt on a finished or unknown one.
    fn cancel(
        &mut self,
        id: &str,
        topic: &str,
        at_ms: i64,
        principal: Option<&str>,
    ) -> Result<Applied, TxFail> {
        if let Some(raw) = self.ops.get(Records, id.as_bytes())? {
            let rec = Record::decode(&raw)?;
            if rec.topic != topic {
                return Ok(Applied::Cancel(CancelResult::TopicMismatch));
            }
            // Records added without ACLs have no owner: any allowed client may cancel them.
            if let Some(p) = principal {
                if !rec.owner.is_empty() && rec.owner != p {
                    return Ok(Applied::Cancel(CancelResult::NotOwner));
                }
            }
            self.retire(
                id,
                &rec,
                &DoneEntry {
                    state: Final::Cancelled,
                    finished_ms: at_ms,
                    last_index: rec.next_index,
                    cancels: vec![(at_ms, CancelResult::Cancelled)],
                },
            )?;
            return Ok(Applied::Cancel(CancelResult::Cancelled));
        }
        if let Some(raw) = self.ops.get(Done, id.as_bytes())? {
            let mut entry = DoneEntry::decode(&raw)?;
            let result = if entry.state == Final::CancelledUnknown {
                CancelResult::Unknown
            } else {
                CancelResult::AfterFinish
            };
            if entry.cancels.len() < MAX_CANCELS_KEPT {
                entry.cancels.push((at_ms, result));
            }
            self.ops.insert(Done, id.as_bytes(), &entry.encode())?;
            return Ok(Applied::Cancel(result));
        }
        self.finish(
            id,
            &DoneEntry {
                state: Final::CancelledUnknown,
                finished_ms: at_ms,
                last_index: 0,
                cancels: vec![(at_ms, CancelResult::Unknown)],
            },
        )?;
        Ok(Applied::Cancel(CancelResult::Unknown))
    }

    /// Ends fire attempt `k` of `id`: a retry, the next occurrence, or the end of the record.
    fn complete(
        &mut self,
        id: &str,
        k: u64,
        end: &FireEnd,
        now_ms: i64,
        catch_up: &CatchUp,
    ) -> Result<Applied, TxFail> {
        let Some(raw) = self.ops.get(Records, id.as_bytes())? else {
            return Ok(Applied::Stale);
        };
        let mut rec = Record::decode(&raw)?;
        if rec.next_index != k {
            return Ok(Applied::Stale);
        }
        let old_due = due_key(rec.next_due_ms, id);
        let dead = matches!(end, FireEnd::Dead { .. });
        if let FireEnd::Dead { code, msg } = end {
            self.ops.insert(
                Dead,
                &dead_key(id, k),
                &encode_dead(&rec, *code, msg, now_ms),
            )?;
        }
        if let FireEnd::Retry { at_ms } = end {
            rec.attempts += 1;
            if rec.first_failure_ms == 0 {
                rec.first_failure_ms = now_ms;
            }
            rec.next_due_ms = *at_ms;
            self.ops.remove(Due, &old_due)?;
            self.insert_due(rec.next_due_ms, id)?;
            self.ops.insert(Records, id.as_bytes(), &rec.encode())?;
            return Ok(Applied::Rescheduled {
                due_ms: *at_ms,
                skipped: 0,
                dead: false,
            });
        }
        // Ok or dead: move to the next occurrence, or finish.
        let next = rec.next_after(
            k,
            now_ms,
            catch_up.late_tolerance_ms,
            catch_up.skip,
            catch_up.max_catch_up,
        );
        let Some((n, skipped, caught_up)) = next else {
            let state = match (rec.kind(), dead) {
                (Kind::Once, true) => Final::Dead,
                (Kind::Once, false) => Final::Fired,
                _ => Final::Completed,
            };
            self.retire(
                id,
                &rec,
                &DoneEntry {
                    state,
                    finished_ms: now_ms,
                    last_index: k,
                    cancels: vec![],
                },
            )?;
            return Ok(Applied::Finished(state));
        };
        self.ops.remove(Due, &old_due)?;
        rec.next_index = n;
        rec.caught_up = caught_up;
        rec.next_due_ms = rec.due_ms(n);
        rec.attempts = 0;
        rec.first_failure_ms = 0;
        self.insert_due(rec.next_due_ms, id)?;
        self.ops.insert(Records, id.as_bytes(), &rec.encode())?;
        Ok(Applied::Rescheduled {
            due_ms: rec.next_due_ms,
            skipped,
            dead,
        })
    }

    /// Drops a pending record another node finished (a journal tombstone), without firing it.
    fn forget(&mut self, id: &str, at_ms: i64) -> Result<Applied, TxFail> {
        let Some(raw) = self.ops.get(Records, id.as_bytes())? else {
            return Ok(Applied::Stale);
        };
        let rec = Record::decode(&raw)?;
        let state = match rec.kind() {
            Kind::Once => Final::Fired,
            _ => Final::Completed,
        };
        self.retire(
            id,
            &rec,
            &DoneEntry {
                state,
                finished_ms: at_ms,
                last_index: rec.next_index,
                cancels: vec![],
            },
        )?;
        Ok(Applied::Finished(state))
    }

    /// Counts a change of the pending count (`write_pending` stores it).
    fn bump(&mut self, delta: i64) {
        self.pending_delta += delta;
    }

    /// The pending count lives in the same transactions that change it, so it is exact after
    /// any crash and start-up never has to walk the records.
    fn write_pending(&mut self) -> Result<(), TxFail> {
        if self.pending_delta == 0 {
            return Ok(());
        }
        let cur = self
            .ops
            .get(Meta, PENDING_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_be_bytes);
        self.ops
            .insert(Meta, PENDING_KEY, &(cur + self.pending_delta).to_be_bytes())
    }

    /// Writes the `due` entry of `id` at `due_ms`.
    fn insert_due(&mut self, due_ms: i64, id: &str) -> Result<(), TxFail> {
        self.lowest_due = Some(self.lowest_due.map_or(due_ms, |l| l.min(due_ms)));
        self.ops.insert(Due, &due_key(due_ms, id), &[])
    }

    /// Stores the final state of `id`.
    fn finish(&mut self, id: &str, entry: &DoneEntry) -> Result<(), TxFail> {
        self.ops.insert(Done, id.as_bytes(), &entry.encode())?;
        self.finished.push((entry.finished_ms, id.to_string()));
        Ok(())
    }

    /// Removes a pending record (its record and its `due` entry) and stores its final state.
    fn retire(&mut self, id: &str, rec: &Record, entry: &DoneEntry) -> Result<(), TxFail> {
        self.ops.remove(Records, id.as_bytes())?;
        self.ops.remove(Due, &due_key(rec.next_due_ms, id))?;
        self.bump(-1);
        self.finish(id, entry)
    }

    /// Indexes the ids the group finished under one `done_by_time` entry.
    fn index_finished(&mut self) -> Result<(), TxFail> {
        let Some(max_ms) = self.finished.iter().map(|(ms, _)| *ms).max() else {
            return Ok(());
        };
        // Keyed by the latest finish time of the group, so trimming reaches the entry only
        // once every id in it is past retention.
        let key = group_time_key(max_ms, &self.finished[0].1);
        let mut v = self.ops.get(DoneByTime, &key)?.unwrap_or_default();
        for (_, id) in &self.finished {
            v.extend_from_slice(&(id.len() as u32).to_be_bytes());
            v.extend_from_slice(id.as_bytes());
        }
        self.ops.insert(DoneByTime, &key, &v)
    }
}

/// Deletes `done` entries finished before `before_ms` and dead letters older than
/// `dead_before_ms`, at most `limit` of each; outside a transaction (each delete stands alone).
pub(super) fn trim(
    kv: &dyn Kv,
    before_ms: i64,
    dead_before_ms: i64,
    limit: usize,
) -> Result<Applied, StoreError> {
    let mut n = 0;
    let end = due_key(before_ms, "");
    for (k, v) in kv.range(DoneByTime, &[], Some(&end), limit)? {
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
            if let Some(raw) = kv.get(Done, id.as_bytes())? {
                if DoneEntry::decode(&raw)?.finished_ms < before_ms {
                    kv.remove(Done, id.as_bytes())?;
                }
            }
            n += 1;
        }
        kv.remove(DoneByTime, &k)?;
    }
    // `dead` is small (dead letters are kept for days, not millions): a scan is fine. Only
    // the keys of stale entries are kept (a value holds the whole record, body included).
    let mut stale = Vec::new();
    kv.scan(Dead, &[], None, &mut |k, v| {
        if let Some(a) = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            if i64::from_be_bytes(a) < dead_before_ms {
                stale.push(k.to_vec());
            }
        }
        stale.len() < limit
    })?;
    for k in stale {
        kv.remove(Dead, &k)?;
        n += 1;
    }
    Ok(Applied::Trimmed(n))
}
