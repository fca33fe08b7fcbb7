//! The cluster journal's records (delay.md §10): what is appended, under which key, to which
//! partition, and how it is read back.

use scheduler::{Corrupt, Dec, DelayId, Enc, Record};
use xxhash_rust::xxh64::xxh64;

/// Format version in the first byte of every journal value.
const VERSION: u8 = 1;

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A new delay message (`sendDelaySync` add).
    Add {
        /// Canonical id.
        id: String,
        /// The record, as the scheduler stores it.
        record: Box<Record>,
    },
    /// A cancel request.
    Cancel {
        /// Canonical id.
        id: String,
        /// Topic of the request.
        topic: String,
        /// Request time, epoch ms.
        at_ms: i64,
        /// Requesting principal (ACLs on).
        principal: Option<String>,
    },
    /// Occurrence `k` of `id` finished (stored by the broker, or dead-lettered when `dead`).
    Fired {
        /// Canonical id.
        id: String,
        /// Occurrence index.
        k: u64,
        /// Epoch of the owner that fired it.
        epoch: i64,
        /// When the broker's answer came, epoch ms: a new owner decides the loop's next
        /// occurrence (and catch-up skips) from this time, as the firing owner did, not from
        /// the time it replays.
        at_ms: i64,
        /// `(code, msg)` when the occurrence was dead-lettered.
        dead: Option<(i32, String)>,
    },
    /// A node took ownership of the partition; the record's offset is its epoch.
    Claim {
        /// Node name.
        node: String,
        /// Its admin address.
        admin: String,
    },
}

/// Errors reading a journal value.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The value is not a journal record this version understands.
    #[error("malformed journal record: {0}")]
    Malformed(&'static str),
}

impl From<Corrupt> for JournalError {
    fn from(_: Corrupt) -> Self {
        JournalError::Malformed("truncated or invalid field")
    }
}

/// Partition of an id: XXH64 of its uuid bytes (seed 0) modulo the partition count, so an add
/// and its cancels share a partition and stay ordered.
pub fn partition_of(uuid: &str, partitions: i32) -> i32 {
    (xxh64(uuid.as_bytes(), 0) % partitions.max(1) as u64) as i32
}

/// Partition of a canonical id string (an id that does not parse hashes as itself).
pub fn partition_of_id(canonical: &str, partitions: i32) -> i32 {
    match DelayId::parse(canonical) {
        Some(d) => partition_of(&d.uuid, partitions),
        None => partition_of(canonical, partitions),
    }
}

impl Entry {
    /// Message key: adds and cancels share the id (compaction keeps the latest of the two);
    /// fired markers have their own key so a loop's add survives them; claims share one key.
    pub fn key(&self) -> String {
        match self {
            Entry::Add { id, .. } | Entry::Cancel { id, .. } => id.clone(),
            Entry::Fired { id, .. } => format!("{id}#fired"),
            Entry::Claim { .. } => "#claim".to_string(),
        }
    }

    /// Binary value: version, kind, then the fields in the scheduler's stored layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(vec![VERSION]);
        match self {
            Entry::Add { id, record } => {
                e.u8(b'A');
                e.bytes(id.as_bytes());
                e.bytes(&record.encode());
            }
            Entry::Cancel {
                id,
                topic,
                at_ms,
                principal,
            } => {
                e.u8(b'C');
                e.bytes(id.as_bytes());
                e.bytes(topic.as_bytes());
                e.i64(*at_ms);
                match principal {
                    Some(p) => {
                        e.u8(1);
                        e.bytes(p.as_bytes());
                    }
                    None => e.u8(0),
                }
            }
            Entry::Fired {
                id,
                k,
                epoch,
                at_ms,
                dead,
            } => {
                e.u8(b'F');
                e.bytes(id.as_bytes());
                e.i64(*k as i64);
                e.i64(*epoch);
                e.i64(*at_ms);
                match dead {
                    Some((code, msg)) => {
                        e.u8(1);
                        e.0.extend_from_slice(&code.to_be_bytes());
                        e.bytes(msg.as_bytes());
                    }
                    None => e.u8(0),
                }
            }
            Entry::Claim { node, admin } => {
                e.u8(b'L');
                e.bytes(node.as_bytes());
                e.bytes(admin.as_bytes());
            }
        }
        e.0
    }

    /// Reads a value written by `encode`.
    pub fn decode(v: &[u8]) -> Result<Entry, JournalError> {
        let mut r = Dec(v);
        if r.u8()? != VERSION {
            return Err(JournalError::Malformed("unknown version"));
        }
        let e = match r.u8()? {
            b'A' => {
                let id = r.string()?;
                let raw = r.bytes()?;
                let record = Record::decode(&raw).map_err(|_| JournalError::Malformed("record"))?;
                Entry::Add {
                    id,
                    record: Box::new(record),
                }
            }
            b'C' => Entry::Cancel {
                id: r.string()?,
                topic: r.string()?,
                at_ms: r.i64()?,
                principal: match r.u8()? {
                    0 => None,
                    _ => Some(r.string()?),
                },
            },
            b'F' => {
                let id = r.string()?;
                let k = r.i64()? as u64;
                let epoch = r.i64()?;
                let at_ms = r.i64()?;
                let dead = match r.u8()? {
                    0 => None,
                    _ => {
                        let code = i32::from_be_bytes(r.take(4)?.try_into().unwrap_or([0; 4]));
                        Some((code, r.string()?))
                    }
                };
                Entry::Fired {
                    id,
                    k,
                    epoch,
                    at_ms,
                    dead,
                }
            }
            b'L' => Entry::Claim {
                node: r.string()?,
                admin: r.string()?,
            },
            _ => return Err(JournalError::Malformed("unknown kind")),
        };
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_record() -> (String, Record) {
        let m = crate::proto::DelayMessage {
            topic: Some("t".into()),
            body: Some(bytes::Bytes::from_static(b"body")),
            timestamp: 1_900_000_000,
            dmsgtype: 3,
            times: 4,
            expire: 1_900_001_000,
            interval: 5,
            uuid: Some("u-1".into()),
            action: 1,
            ..Default::default()
        };
        crate::delay::build_add(m, 10, 1_800_000_000_000, Some("ops"))
    }

    #[test]
    fn every_kind_round_trips() {
        let (id, record) = sample_record();
        let entries = [
            Entry::Add {
                id: id.clone(),
                record: Box::new(record),
            },
            Entry::Cancel {
                id: id.clone(),
                topic: "t".into(),
                at_ms: 7,
                principal: Some("ops".into()),
            },
            Entry::Cancel {
                id: id.clone(),
                topic: "t".into(),
                at_ms: 7,
                principal: None,
            },
            Entry::Fired {
                id: id.clone(),
                k: 3,
                epoch: 42,
                at_ms: 1_800_000_000_123,
                dead: Some((11, "no".into())),
            },
            Entry::Fired {
                id,
                k: 0,
                epoch: 1,
                at_ms: 0,
                dead: None,
            },
            Entry::Claim {
                node: "n1".into(),
                admin: "127.0.0.1:1".into(),
            },
        ];
        for e in entries {
            let v = e.encode();
            assert_eq!(Entry::decode(&v).expect("decodes"), e);
            // Every strict prefix is refused, never misread.
            for n in 0..v.len() {
                assert!(Entry::decode(&v[..n]).is_err(), "prefix {n} of {e:?}");
            }
        }
    }

    #[test]
    fn add_and_cancel_of_one_id_share_key_and_partition() {
        let (id, record) = sample_record();
        let add = Entry::Add {
            id: id.clone(),
            record: Box::new(record.clone()),
        };
        let cancel = Entry::Cancel {
            id: id.clone(),
            topic: "t".into(),
            at_ms: 0,
            principal: None,
        };
        assert_eq!(add.key(), cancel.key());
        assert_ne!(
            add.key(),
            Entry::Fired {
                id: id.clone(),
                k: 0,
                epoch: 0,
                at_ms: 0,
                dead: None
            }
            .key()
        );
        assert_eq!(
            partition_of(&record.id.uuid, 12),
            partition_of_id(&id, 12),
            "the partition of a cancel (by id) is the add's (by uuid)"
        );
        // The reference value of XXH64("", 0) pins the hash function itself.
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
    }
}
