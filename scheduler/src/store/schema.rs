//! The on-disk schema: the key layout of the six trees and the codecs of `done`, `dead` and
//! `done_by_time` values. Byte-identical to what earlier versions wrote.

use super::types::{CancelResult, DeadLetter, DoneEntry, Final};
use crate::record::{Corrupt, Record};

pub(super) const PENDING_KEY: &[u8] = b"pending";
/// Meta key of the last cluster-journal offset applied.
pub(super) const JOURNAL_OFFSET_KEY: &[u8] = b"journal_offset";
/// Meta key of the fired-through watermark (delay.md §8.5), big-endian ms.
pub(super) const FIRED_THROUGH_KEY: &[u8] = b"fired_through_ms";

/// Key of the `due` tree: big-endian due ms, then the id.
pub(crate) fn due_key(due_ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a `due` key into (due ms, id).
pub(super) fn split_due_key(k: &[u8]) -> Option<(i64, String)> {
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
pub(super) fn group_time_key(ms: i64, first_id: &str) -> Vec<u8> {
    let mut k = due_key(ms, "");
    k.push(0);
    k.extend_from_slice(first_id.as_bytes());
    k
}

/// Decodes a group entry's value: ids, each prefixed by its u32 big-endian length.
pub(super) fn split_id_list(mut v: &[u8]) -> Result<Vec<String>, Corrupt> {
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

pub(super) fn dead_key(id: &str, k: u64) -> Vec<u8> {
    let mut v = id.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(&k.to_be_bytes());
    v
}

/// Cancel attempts remembered per finished id.
pub(super) const MAX_CANCELS_KEPT: usize = 16;

impl DoneEntry {
    /// The `done` value.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.state as u8];
        v.extend_from_slice(&self.finished_ms.to_be_bytes());
        v.extend_from_slice(&self.last_index.to_be_bytes());
        for (at, r) in &self.cancels {
            v.extend_from_slice(&at.to_be_bytes());
            v.push(*r as u8);
        }
        v
    }

    /// Decodes a `done` value.
    pub(super) fn decode(b: &[u8]) -> Result<DoneEntry, Corrupt> {
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

/// The `dead` value: dead ms, code, message, record.
pub(super) fn encode_dead(r: &Record, code: i32, msg: &str, dead_ms: i64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dead_ms.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg.as_bytes());
    v.extend_from_slice(&r.encode());
    v
}

/// Decodes a `dead` entry.
pub(super) fn decode_dead(key: &[u8], v: &[u8]) -> Result<DeadLetter, Corrupt> {
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
