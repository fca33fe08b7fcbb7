//! Encoding: one reply or request frame, length prefix included.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Protocol, TType};

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
