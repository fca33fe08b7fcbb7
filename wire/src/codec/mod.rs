//! Thrift compact and strict-binary protocol primitives over in-memory frames.
//!
//! Hand-written rather than generated: the contract needs rules the generated Rust code does not
//! follow (wrong-typed fields skipped, invalid UTF-8 answered with code 11 instead of a protocol
//! error, container lengths checked against the bytes left before anything is allocated, bodies
//! sliced from the frame without a copy). See docs/DECISIONS.md.

use bytes::Bytes;

mod read;
mod write;

pub use read::Reader;
pub use write::Writer;

/// Which Thrift protocol a frame uses; replies use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCompactProtocol (first byte 0x82).
    Compact,
    /// TBinaryProtocol, strict (first bytes 0x80 0x01).
    Binary,
}

impl Protocol {
    /// Detects the protocol from the first payload byte of a frame.
    pub fn detect(first: u8) -> Option<Protocol> {
        match first {
            0x82 => Some(Protocol::Compact),
            0x80 => Some(Protocol::Binary),
            _ => None,
        }
    }
}

/// Thrift message types.
pub mod message_type {
    /// A call expecting a reply.
    pub const CALL: u8 = 1;
    /// A reply.
    pub const REPLY: u8 = 2;
    /// An exception reply.
    pub const EXCEPTION: u8 = 3;
    /// A call without reply.
    pub const ONEWAY: u8 = 4;
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The data ended inside a value.
    #[error("unexpected end of data")]
    Eof,
    /// A type id that the protocol does not define.
    #[error("invalid type id {0}")]
    BadType(u8),
    /// A varint longer than its type allows.
    #[error("malformed varint")]
    Varint,
    /// A length larger than the bytes that remain.
    #[error("length {0} exceeds the remaining bytes")]
    Length(i64),
    /// A container whose element types do not match the IDL.
    #[error("wrong container element type")]
    ElementType,
    /// Containers nested deeper than we accept.
    #[error("nesting too deep")]
    Depth,
    /// The message header is not a valid Thrift header.
    #[error("bad message header")]
    Header,
}

/// Wire-independent Thrift value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TType {
    /// bool
    Bool,
    /// byte
    Byte,
    /// i16
    I16,
    /// i32
    I32,
    /// i64
    I64,
    /// double
    Double,
    /// string / binary
    Binary,
    /// struct
    Struct,
    /// map
    Map,
    /// set
    Set,
    /// list
    List,
}

impl TType {
    fn from_compact(b: u8) -> Result<TType, DecodeError> {
        Ok(match b {
            1 | 2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::Binary,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            other => return Err(DecodeError::BadType(other)),
        })
    }

    fn compact_id(self) -> u8 {
        match self {
            TType::Bool => 1,
            TType::Byte => 3,
            TType::I16 => 4,
            TType::I32 => 5,
            TType::I64 => 6,
            TType::Double => 7,
            TType::Binary => 8,
            TType::List => 9,
            TType::Set => 10,
            TType::Map => 11,
            TType::Struct => 12,
        }
    }

    fn from_binary(b: u8) -> Result<TType, DecodeError> {
        Ok(match b {
            2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::Binary,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            other => return Err(DecodeError::BadType(other)),
        })
    }

    fn binary_id(self) -> u8 {
        match self {
            TType::Bool => 2,
            TType::Byte => 3,
            TType::Double => 4,
            TType::I16 => 6,
            TType::I32 => 8,
            TType::I64 => 10,
            TType::Binary => 11,
            TType::Struct => 12,
            TType::Map => 13,
            TType::Set => 14,
            TType::List => 15,
        }
    }

    /// Smallest encoded size of one value of this type, to bound container lengths.
    fn min_size(self, proto: Protocol) -> usize {
        match (proto, self) {
            (_, TType::Bool | TType::Byte | TType::Struct) => 1,
            (Protocol::Compact, TType::I16 | TType::I32 | TType::I64 | TType::Binary) => 1,
            (Protocol::Compact, TType::Map | TType::List | TType::Set) => 1,
            (_, TType::Double) => 8,
            (Protocol::Binary, TType::I16) => 2,
            (Protocol::Binary, TType::I32 | TType::Binary) => 4,
            (Protocol::Binary, TType::I64) => 8,
            (Protocol::Binary, TType::Map) => 6,
            (Protocol::Binary, TType::List | TType::Set) => 5,
        }
    }
}

/// The header of a Thrift message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// Protocol of the frame.
    pub protocol: Protocol,
    /// Method name bytes exactly as received (echoed in the reply).
    pub name: Bytes,
    /// Message type (CALL, ONEWAY, ...).
    pub mtype: u8,
    /// Sequence id, opaque, echoed.
    pub seqid: i32,
}

impl MessageHeader {
    /// The method name as text, if it is UTF-8.
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("")
    }
}

/// Reads the message header at the start of a frame payload.
pub fn read_header(payload: &Bytes) -> Result<(MessageHeader, usize), DecodeError> {
    let first = *payload.first().ok_or(DecodeError::Header)?;
    let proto = Protocol::detect(first).ok_or(DecodeError::Header)?;
    let mut r = Reader::new(payload, 0, proto);
    let h = r.message_header().map_err(|_| DecodeError::Header)?;
    Ok((h, r.position()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(w: Writer) -> Bytes {
        w.finish().slice(4..)
    }

    #[test]
    fn header_round_trip_both_protocols() {
        for proto in [Protocol::Compact, Protocol::Binary] {
            for seqid in [0, 1, 12345, -1, i32::MAX, i32::MIN] {
                let mut w = Writer::new(proto);
                w.message_begin(b"sendSync", message_type::CALL, seqid);
                let p = payload(w);
                let (h, _) = read_header(&p).unwrap();
                assert_eq!(h.protocol, proto);
                assert_eq!(&h.name[..], b"sendSync");
                assert_eq!(h.seqid, seqid);
                assert_eq!(h.mtype, message_type::CALL);
            }
        }
    }

    #[test]
    fn compact_seqid_is_plain_varint_not_zigzag() {
        let mut w = Writer::new(Protocol::Compact);
        w.message_begin(b"m", message_type::CALL, 1);
        let p = payload(w);
        assert_eq!(&p[..], &[0x82, 0x21, 0x01, 0x01, b'm']);
    }

    #[test]
    fn scalars_round_trip() {
        for proto in [Protocol::Compact, Protocol::Binary] {
            let mut w = Writer::new(proto);
            w.struct_begin();
            w.field_begin(TType::I32, 1);
            w.write_i32(-7);
            w.field_begin(TType::I64, 20);
            w.write_i64(i64::MIN);
            w.bool_field(21, true);
            w.field_begin(TType::Binary, 3);
            w.write_binary(b"\xff\x00abc");
            w.struct_end();
            let p = payload(w);
            let mut r = Reader::new(&p, 0, proto);
            r.struct_begin().unwrap();
            assert_eq!(r.field_begin().unwrap(), Some((TType::I32, 1)));
            assert_eq!(r.read_i32().unwrap(), -7);
            assert_eq!(r.field_begin().unwrap(), Some((TType::I64, 20)));
            assert_eq!(r.read_i64().unwrap(), i64::MIN);
            assert_eq!(r.field_begin().unwrap(), Some((TType::Bool, 21)));
            assert!(r.read_bool().unwrap());
            assert_eq!(r.field_begin().unwrap(), Some((TType::Binary, 3)));
            assert_eq!(&r.read_binary().unwrap()[..], b"\xff\x00abc");
            assert_eq!(r.field_begin().unwrap(), None);
        }
    }

    #[test]
    fn huge_declared_lengths_are_rejected_without_allocation() {
        // binary of declared length 2^31 in a 6-byte buffer
        let p = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x07, 0x00]);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert!(matches!(r.read_binary(), Err(DecodeError::Length(_))));
        // list of 2^28 structs
        let p = Bytes::from_static(&[0xfc, 0xff, 0xff, 0xff, 0x7f]);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert!(matches!(r.list_begin(), Err(DecodeError::Length(_))));
        // binary protocol negative length
        let p = Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]);
        let mut r = Reader::new(&p, 0, Protocol::Binary);
        assert!(r.read_binary().is_err());
    }

    #[test]
    fn empty_compact_map_is_one_zero_byte() {
        let p = Bytes::from_static(&[0x00]);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert_eq!(r.map_begin().unwrap().2, 0);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn malformed_varint_and_deep_nesting_fail() {
        let p = Bytes::from_static(&[0xff; 12]);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert_eq!(r.read_i32(), Err(DecodeError::Varint));
        // 100 nested structs: field 1 type struct, repeated
        let p = Bytes::from(vec![0x1c; 100]);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert!(r.skip(TType::Struct).is_err());
    }
}
