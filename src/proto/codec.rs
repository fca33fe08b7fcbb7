//! Thrift compact and strict-binary protocol primitives over in-memory frames.
//!
//! Hand-written rather than generated: the contract needs rules the generated Rust code does not
//! follow (wrong-typed fields skipped, invalid UTF-8 answered with code 11 instead of a protocol
//! error, container lengths checked against the bytes left before anything is allocated, bodies
//! sliced from the frame without a copy). See docs/DECISIONS.md.

use bytes::{BufMut, Bytes, BytesMut};

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

const MAX_DEPTH: usize = 64;

/// Decoder over one frame payload.
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    proto: Protocol,
    last_field: i16,
    field_stack: Vec<i16>,
    pending_bool: Option<bool>,
}

impl<'a> Reader<'a> {
    /// A reader positioned at `pos` of `buf`.
    pub fn new(buf: &'a Bytes, pos: usize, proto: Protocol) -> Self {
        Reader {
            buf,
            pos,
            proto,
            last_field: 0,
            field_stack: Vec::new(),
            pending_bool: None,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current position in the frame.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Eof);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self, max_bytes: usize) -> Result<u64, DecodeError> {
        let mut out: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(DecodeError::Varint)
    }

    fn zigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn be_i32(&mut self) -> Result<i32, DecodeError> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// Reads a message header at the reader's position.
    pub fn message_header(&mut self) -> Result<MessageHeader, DecodeError> {
        match self.proto {
            Protocol::Compact => {
                if self.byte()? != 0x82 {
                    return Err(DecodeError::Header);
                }
                let tv = self.byte()?;
                if tv & 0x1f != 0x01 {
                    return Err(DecodeError::Header);
                }
                let mtype = tv >> 5;
                let seqid = self.varint(5)? as u32 as i32;
                let len = self.varint(5)? as usize;
                let name = self.slice(len)?;
                Ok(MessageHeader {
                    protocol: Protocol::Compact,
                    name,
                    mtype,
                    seqid,
                })
            }
            Protocol::Binary => {
                let v = self.be_i32()? as u32;
                if v & 0xffff_0000 != 0x8001_0000 {
                    return Err(DecodeError::Header);
                }
                let mtype = (v & 0xff) as u8;
                let len = self.be_i32()?;
                if len < 0 {
                    return Err(DecodeError::Header);
                }
                let name = self.slice(len as usize)?;
                let seqid = self.be_i32()?;
                Ok(MessageHeader {
                    protocol: Protocol::Binary,
                    name,
                    mtype,
                    seqid,
                })
            }
        }
    }

    fn slice(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Length(len as i64));
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// Enters a struct.
    pub fn struct_begin(&mut self) -> Result<(), DecodeError> {
        if self.field_stack.len() >= MAX_DEPTH {
            return Err(DecodeError::Depth);
        }
        self.field_stack.push(self.last_field);
        self.last_field = 0;
        Ok(())
    }

    /// Leaves a struct.
    pub fn struct_end(&mut self) {
        self.last_field = self.field_stack.pop().unwrap_or(0);
    }

    /// Next field header; `None` at STOP.
    pub fn field_begin(&mut self) -> Result<Option<(TType, i16)>, DecodeError> {
        match self.proto {
            Protocol::Compact => {
                let b = self.byte()?;
                if b == 0 {
                    return Ok(None);
                }
                let tid = b & 0x0f;
                let ttype = TType::from_compact(tid)?;
                let delta = (b >> 4) as i16;
                let id = if delta == 0 {
                    Self::zigzag(self.varint(3)?) as i16
                } else {
                    self.last_field.wrapping_add(delta)
                };
                self.last_field = id;
                if ttype == TType::Bool {
                    self.pending_bool = Some(tid == 1);
                }
                Ok(Some((ttype, id)))
            }
            Protocol::Binary => {
                let b = self.byte()?;
                if b == 0 {
                    return Ok(None);
                }
                let ttype = TType::from_binary(b)?;
                let s = self.take(2)?;
                Ok(Some((ttype, i16::from_be_bytes([s[0], s[1]]))))
            }
        }
    }

    /// Reads a bool (field value or container element).
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        if let Some(v) = self.pending_bool.take() {
            return Ok(v);
        }
        let b = self.byte()?;
        Ok(match self.proto {
            Protocol::Compact => b == 1,
            Protocol::Binary => b != 0,
        })
    }

    /// Reads an i8.
    pub fn read_byte(&mut self) -> Result<i8, DecodeError> {
        Ok(self.byte()? as i8)
    }

    /// Reads an i16.
    pub fn read_i16(&mut self) -> Result<i16, DecodeError> {
        match self.proto {
            Protocol::Compact => Ok(Self::zigzag(self.varint(3)?) as i16),
            Protocol::Binary => {
                let s = self.take(2)?;
                Ok(i16::from_be_bytes([s[0], s[1]]))
            }
        }
    }

    /// Reads an i32.
    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        match self.proto {
            Protocol::Compact => Ok(Self::zigzag(self.varint(5)?) as i32),
            Protocol::Binary => self.be_i32(),
        }
    }

    /// Reads an i64.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        match self.proto {
            Protocol::Compact => Ok(Self::zigzag(self.varint(10)?)),
            Protocol::Binary => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Ok(i64::from_be_bytes(a))
            }
        }
    }

    /// Reads a double.
    pub fn read_double(&mut self) -> Result<f64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(match self.proto {
            Protocol::Compact => f64::from_le_bytes(a),
            Protocol::Binary => f64::from_be_bytes(a),
        })
    }

    /// Reads a binary/string value as a slice of the frame (no copy).
    pub fn read_binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = match self.proto {
            Protocol::Compact => self.varint(5)? as i64,
            Protocol::Binary => self.be_i32()? as i64,
        };
        if len < 0 || len as u64 > self.remaining() as u64 {
            return Err(DecodeError::Length(len));
        }
        self.slice(len as usize)
    }

    fn check_count(&self, count: i64, per_item: usize) -> Result<u32, DecodeError> {
        if count < 0 || (count as u64).saturating_mul(per_item as u64) > self.remaining() as u64 {
            return Err(DecodeError::Length(count));
        }
        Ok(count as u32)
    }

    /// Reads a list or set header: element type and count.
    pub fn list_begin(&mut self) -> Result<(TType, u32), DecodeError> {
        let (et, count) = match self.proto {
            Protocol::Compact => {
                let b = self.byte()?;
                let et = TType::from_compact(b & 0x0f)?;
                let short = (b >> 4) as i64;
                let count = if short == 15 {
                    self.varint(5)? as i64
                } else {
                    short
                };
                (et, count)
            }
            Protocol::Binary => {
                let et = TType::from_binary(self.byte()?)?;
                (et, self.be_i32()? as i64)
            }
        };
        let count = self.check_count(count, et.min_size(self.proto))?;
        Ok((et, count))
    }

    /// Reads a map header: key type, value type and count.
    pub fn map_begin(&mut self) -> Result<(TType, TType, u32), DecodeError> {
        let (kt, vt, count) = match self.proto {
            Protocol::Compact => {
                let count = self.varint(5)? as i64;
                if count == 0 {
                    // Empty maps carry no type byte; the types are irrelevant.
                    return Ok((TType::Binary, TType::Binary, 0));
                }
                let b = self.byte()?;
                (
                    TType::from_compact(b >> 4)?,
                    TType::from_compact(b & 0x0f)?,
                    count,
                )
            }
            Protocol::Binary => {
                let kt = TType::from_binary(self.byte()?)?;
                let vt = TType::from_binary(self.byte()?)?;
                (kt, vt, self.be_i32()? as i64)
            }
        };
        let per = kt.min_size(self.proto) + vt.min_size(self.proto);
        let count = self.check_count(count, per)?;
        Ok((kt, vt, count))
    }

    /// Skips one value of type `t`.
    pub fn skip(&mut self, t: TType) -> Result<(), DecodeError> {
        self.skip_depth(t, 0)
    }

    fn skip_depth(&mut self, t: TType, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Depth);
        }
        match t {
            TType::Bool => {
                self.read_bool()?;
            }
            TType::Byte => {
                self.byte()?;
            }
            TType::I16 => {
                self.read_i16()?;
            }
            TType::I32 => {
                self.read_i32()?;
            }
            TType::I64 => {
                self.read_i64()?;
            }
            TType::Double => {
                self.take(8)?;
            }
            TType::Binary => {
                self.read_binary()?;
            }
            TType::Struct => {
                self.struct_begin()?;
                while let Some((ft, _)) = self.field_begin()? {
                    self.skip_depth(ft, depth + 1)?;
                }
                self.struct_end();
            }
            TType::List | TType::Set => {
                let (et, n) = self.list_begin()?;
                for _ in 0..n {
                    self.skip_depth(et, depth + 1)?;
                }
            }
            TType::Map => {
                let (kt, vt, n) = self.map_begin()?;
                for _ in 0..n {
                    self.skip_depth(kt, depth + 1)?;
                    self.skip_depth(vt, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Encoder producing one frame (length prefix included).
pub struct Writer {
    buf: BytesMut,
    proto: Protocol,
    last_field: i16,
    field_stack: Vec<i16>,
}

impl Writer {
    /// A writer with room reserved for the frame length.
    pub fn new(proto: Protocol) -> Self {
        let mut buf = BytesMut::with_capacity(128);
        buf.put_u32(0);
        Writer {
            buf,
            proto,
            last_field: 0,
            field_stack: Vec::new(),
        }
    }

    /// Finishes the frame: fills in the length prefix.
    pub fn finish(mut self) -> Bytes {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf.freeze()
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    /// Writes a message header.
    pub fn message_begin(&mut self, name: &[u8], mtype: u8, seqid: i32) {
        match self.proto {
            Protocol::Compact => {
                self.buf.put_u8(0x82);
                self.buf.put_u8((mtype << 5) | 0x01);
                self.varint(u64::from(seqid as u32));
                self.varint(name.len() as u64);
                self.buf.put_slice(name);
            }
            Protocol::Binary => {
                self.buf.put_u32(0x8001_0000 | u32::from(mtype));
                self.buf.put_i32(name.len() as i32);
                self.buf.put_slice(name);
                self.buf.put_i32(seqid);
            }
        }
    }

    /// Enters a struct.
    pub fn struct_begin(&mut self) {
        self.field_stack.push(self.last_field);
        self.last_field = 0;
    }

    /// Writes STOP and leaves the struct.
    pub fn struct_end(&mut self) {
        self.buf.put_u8(0);
        self.last_field = self.field_stack.pop().unwrap_or(0);
    }

    fn field_header(&mut self, t: TType, id: i16, compact_type: u8) {
        match self.proto {
            Protocol::Compact => {
                let delta = id.wrapping_sub(self.last_field);
                if delta > 0 && delta <= 15 {
                    self.buf.put_u8(((delta as u8) << 4) | compact_type);
                } else {
                    self.buf.put_u8(compact_type);
                    self.varint(Self::zigzag(i64::from(id)));
                }
                self.last_field = id;
            }
            Protocol::Binary => {
                self.buf.put_u8(t.binary_id());
                self.buf.put_i16(id);
            }
        }
    }

    /// Writes a field header for a non-bool field.
    pub fn field_begin(&mut self, t: TType, id: i16) {
        self.field_header(t, id, t.compact_id());
    }

    /// Writes a bool field (header and value).
    pub fn bool_field(&mut self, id: i16, v: bool) {
        match self.proto {
            Protocol::Compact => self.field_header(TType::Bool, id, if v { 1 } else { 2 }),
            Protocol::Binary => {
                self.field_header(TType::Bool, id, 0);
                self.buf.put_u8(u8::from(v));
            }
        }
    }

    /// Writes an i32 value.
    pub fn write_i32(&mut self, v: i32) {
        match self.proto {
            Protocol::Compact => self.varint(Self::zigzag(i64::from(v))),
            Protocol::Binary => self.buf.put_i32(v),
        }
    }

    /// Writes an i64 value.
    pub fn write_i64(&mut self, v: i64) {
        match self.proto {
            Protocol::Compact => self.varint(Self::zigzag(v)),
            Protocol::Binary => self.buf.put_i64(v),
        }
    }

    /// Writes a binary/string value.
    pub fn write_binary(&mut self, v: &[u8]) {
        match self.proto {
            Protocol::Compact => self.varint(v.len() as u64),
            Protocol::Binary => self.buf.put_i32(v.len() as i32),
        }
        self.buf.put_slice(v);
    }

    /// Writes a list header.
    pub fn list_begin(&mut self, et: TType, n: usize) {
        match self.proto {
            Protocol::Compact => {
                if n < 15 {
                    self.buf.put_u8(((n as u8) << 4) | et.compact_id());
                } else {
                    self.buf.put_u8(0xf0 | et.compact_id());
                    self.varint(n as u64);
                }
            }
            Protocol::Binary => {
                self.buf.put_u8(et.binary_id());
                self.buf.put_i32(n as i32);
            }
        }
    }

    /// Writes a map header.
    pub fn map_begin(&mut self, kt: TType, vt: TType, n: usize) {
        match self.proto {
            Protocol::Compact => {
                self.varint(n as u64);
                if n > 0 {
                    self.buf.put_u8((kt.compact_id() << 4) | vt.compact_id());
                }
            }
            Protocol::Binary => {
                self.buf.put_u8(kt.binary_id());
                self.buf.put_u8(vt.binary_id());
                self.buf.put_i32(n as i32);
            }
        }
    }

    /// Writes the bytes of a raw, already encoded payload (tests and tools).
    pub fn write_raw(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
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
