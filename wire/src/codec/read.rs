//! Decoding: one frame payload read field by field, with the contract's leniency rules.

use bytes::Bytes;

use super::{DecodeError, MessageHeader, Protocol, TType};

/// Nesting bound for skipped structs and containers: a hostile frame cannot exhaust the stack.
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
