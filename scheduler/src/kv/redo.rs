//! The redo log of the redb engine: one preallocated file of checksummed records, each the
//! physical writes of one committed transaction, so that a durable flush is one `fdatasync` of
//! a sequential write instead of redb's durable commit (docs/DECISIONS.md, "Delay store
//! engine").
//!
//! Records are written in commit order at increasing offsets; each carries a sequence number
//! one higher than the previous record's. The database stores, in the same transaction as the
//! writes, the sequence number and the end offset of its last record, so after a crash it knows
//! exactly where its durable state ends in the log. When the file is full the database commits
//! durably (a checkpoint) and the log starts again at offset 0. Recovery reads from the stored
//! offset and stops at the first record that is torn, zeroed or of another sequence number:
//! records left from an earlier pass of the file always have lower numbers.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::TreeId;

/// Bytes before a record's payload: payload length (u32), CRC-32 of sequence number and
/// payload (u32), sequence number (u64); all little-endian.
const HEADER: usize = 16;

const PUT: u8 = 0;
const DEL: u8 = 1;

/// The physical writes of one transaction, encoded as they are made.
#[derive(Default)]
pub struct Ops {
    buf: Vec<u8>,
}

impl Ops {
    /// Records a write of `v` at `k` in `t`.
    pub fn put(&mut self, t: TreeId, k: &[u8], v: &[u8]) {
        self.head(PUT, t, k);
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(v);
    }

    /// Records a delete of `k` in `t`.
    pub fn del(&mut self, t: TreeId, k: &[u8]) {
        self.head(DEL, t, k);
    }

    fn head(&mut self, op: u8, t: TreeId, k: &[u8]) {
        self.buf.push(op);
        self.buf.push(t as u8);
        self.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(k);
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes the record of these writes takes in the log.
    pub fn record_len(&self) -> u64 {
        (HEADER + self.buf.len()) as u64
    }
}

/// One write decoded from a record.
pub enum Op<'a> {
    /// `k` was set to `v` in the tree.
    Put(TreeId, &'a [u8], &'a [u8]),
    /// `k` was deleted from the tree.
    Del(TreeId, &'a [u8]),
}

/// Decodes a record's payload; `None` if it is malformed (treated as the end of the log).
pub fn decode(payload: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        let s = take(b, 4)?;
        Some(u32::from_le_bytes(s.try_into().ok()?) as usize)
    }
    let mut b = payload;
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = take(&mut b, 2)?;
        let tree = tree_of(h[1])?;
        let kl = len(&mut b)?;
        let k = take(&mut b, kl)?;
        match h[0] {
            PUT => {
                let vl = len(&mut b)?;
                out.push(Op::Put(tree, k, take(&mut b, vl)?));
            }
            DEL => out.push(Op::Del(tree, k)),
            _ => return None,
        }
    }
    Some(out)
}

fn tree_of(b: u8) -> Option<TreeId> {
    Some(match b {
        0 => TreeId::Records,
        1 => TreeId::Due,
        2 => TreeId::Done,
        3 => TreeId::DoneByTime,
        4 => TreeId::Dead,
        5 => TreeId::Meta,
        _ => return None,
    })
}

/// Where the log stands: the next record's sequence number and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Sequence number of the last record applied (0: none yet).
    pub seq: u64,
    /// Offset where the next record goes.
    pub offset: u64,
}

impl Position {
    /// The 16 bytes the database stores.
    pub fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    /// Reads a stored position.
    pub fn decode(b: &[u8]) -> Option<Position> {
        Some(Position {
            seq: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            offset: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }

    /// The position after a record of `len` bytes.
    pub fn after(self, len: u64) -> Position {
        Position {
            seq: self.seq + 1,
            offset: self.offset + len,
        }
    }
}

/// The open log file.
pub struct RedoLog {
    file: File,
    capacity: u64,
}

impl RedoLog {
    /// Opens the log at `path`, creating it zero-filled to `capacity` bytes: writes into
    /// allocated blocks make each `fdatasync` a data-only sync (half the cost of an append).
    pub fn open(path: &Path, capacity: u64) -> io::Result<RedoLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < capacity {
            let zeros = vec![0u8; 1 << 20];
            let mut at = len;
            while at < capacity {
                let n = zeros.len().min((capacity - at) as usize);
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
        }
        Ok(RedoLog {
            file,
            capacity: capacity.max(len),
        })
    }

    /// True if a record of `len` bytes fits at `at`.
    pub fn fits(&self, at: Position, len: u64) -> bool {
        at.offset + len <= self.capacity
    }

    /// Writes the record of `ops` at `at` (not synced); its sequence number is `at.seq + 1`.
    pub fn append(&self, at: Position, ops: &Ops) -> io::Result<()> {
        let seq = at.seq + 1;
        let mut rec = Vec::with_capacity(HEADER + ops.buf.len());
        rec.extend_from_slice(&(ops.buf.len() as u32).to_le_bytes());
        rec.extend_from_slice(&checksum(seq, &ops.buf).to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&ops.buf);
        self.file.write_all_at(&rec, at.offset)
    }

    /// Makes every record written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The payloads of the records after `from`, in order, and the position after the last;
    /// stops at the first record that is torn, zeroed or out of sequence.
    pub fn records(&self, from: Position) -> io::Result<(Vec<Vec<u8>>, Position)> {
        let mut at = from;
        let mut out = Vec::new();
        if at.offset >= self.capacity {
            return Ok((out, at));
        }
        let mut tail = vec![0u8; (self.capacity - at.offset) as usize];
        self.file.read_exact_at(&mut tail, at.offset)?;
        let mut rest = &tail[..];
        while rest.len() >= HEADER {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&rest[8..16]);
            let seq = u64::from_le_bytes(s);
            if len == 0 || seq != at.seq + 1 || rest.len() - HEADER < len {
                break;
            }
            let payload = &rest[HEADER..HEADER + len];
            if checksum(seq, payload) != crc {
                break;
            }
            out.push(payload.to_vec());
            at = at.after((HEADER + len) as u64);
            rest = &rest[HEADER + len..];
        }
        Ok((out, at))
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(k: &[u8], v: &[u8]) -> Ops {
        let mut o = Ops::default();
        o.put(TreeId::Records, k, v);
        o.del(TreeId::Due, b"gone");
        o
    }

    fn replayed(log: &RedoLog, from: Position) -> (Vec<Vec<u8>>, Position) {
        let (records, end) = log.records(from).unwrap();
        let mut keys = Vec::new();
        for p in &records {
            for op in decode(p).expect("decodes") {
                if let Op::Put(TreeId::Records, k, _) = op {
                    keys.push(k.to_vec());
                }
            }
        }
        (keys, end)
    }

    #[test]
    fn records_replay_in_order_and_stop_at_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedoLog::open(&dir.path().join("log"), 4096).unwrap();
        let mut at = Position::default();
        for k in [&b"a"[..], b"b", b"c"] {
            let o = ops(k, b"value");
            log.append(at, &o).unwrap();
            at = at.after(o.record_len());
        }
        let (keys, end) = replayed(&log, Position::default());
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(end, at);
        // From the middle: only what follows.
        let first = ops(b"a", b"value").record_len();
        let (keys, _) = replayed(
            &log,
            Position {
                seq: 1,
                offset: first,
            },
        );
        assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
        // A flipped byte in the second record ends the log there.
        log.file
            .write_all_at(&[0xff], first + HEADER as u64 + 3)
            .unwrap();
        let (keys, end) = replayed(&log, Position::default());
        assert_eq!(keys, vec![b"a".to_vec()]);
        assert_eq!(
            end,
            Position {
                seq: 1,
                offset: first
            }
        );
    }

    #[test]
    fn records_of_an_earlier_pass_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedoLog::open(&dir.path().join("log"), 4096).unwrap();
        let mut at = Position::default();
        for k in [&b"old1"[..], b"old2", b"old3"] {
            let o = ops(k, b"v");
            log.append(at, &o).unwrap();
            at = at.after(o.record_len());
        }
        // Wrap: the next pass starts at 0 with sequence 4 and overwrites only the first record.
        let wrapped = Position {
            seq: at.seq,
            offset: 0,
        };
        let o = ops(b"new4", b"v");
        log.append(wrapped, &o).unwrap();
        let (keys, end) = replayed(&log, wrapped);
        assert_eq!(keys, vec![b"new4".to_vec()]);
        assert_eq!(end.seq, 4);
        assert!(!log.fits(end, 4096));
    }
}
