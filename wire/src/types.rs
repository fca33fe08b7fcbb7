//! The IDL's structs and method arguments, decoded per wire.md §3.4 and encoded for replies.

use std::collections::HashMap;

use bytes::Bytes;

use super::codec::{message_type, DecodeError, Protocol, Reader, TType, Writer};
use super::codes::Code;

/// A decoded `Message` (IDL struct). Strings are `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Field 1.
    pub topic: Option<String>,
    /// Field 2.
    pub key: Option<String>,
    /// Field 3: raw bytes, never UTF-8 checked.
    pub value: Option<Bytes>,
    /// Field 4.
    pub hash_id: i64,
    /// Field 5.
    pub tags: Option<String>,
    /// Field 6; absent decodes as -1 (the IDL default).
    pub partition_id: i32,
    /// Field 7.
    pub body: Option<Bytes>,
    /// Field 8.
    pub version: Option<String>,
    /// Field 9, in wire order with duplicate keys removed (last wins).
    pub properties: Vec<(String, String)>,
    /// Some string field was not valid UTF-8 (answered with code 11).
    pub invalid_utf8: bool,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            topic: None,
            key: None,
            value: None,
            hash_id: 0,
            tags: None,
            partition_id: -1,
            body: None,
            version: None,
            properties: Vec::new(),
            invalid_utf8: false,
        }
    }
}

impl Message {
    /// The body: `body` when present (even empty), else the bytes of `value`.
    pub fn payload(&self) -> Option<&Bytes> {
        self.body.as_ref().or(self.value.as_ref())
    }

    /// Whether a property with this key exists.
    pub fn has_property(&self, key: &str) -> bool {
        self.properties.iter().any(|(k, _)| k == key)
    }
}

/// A decoded `DelayMessage` (IDL struct).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayMessage {
    /// Field 1.
    pub topic: Option<String>,
    /// Field 2.
    pub uniq_delay_msg_id: Option<String>,
    /// Field 3.
    pub body: Option<Bytes>,
    /// Field 4.
    pub tags: Option<String>,
    /// Field 5.
    pub action: i32,
    /// Field 6.
    pub timestamp: i64,
    /// Field 7.
    pub dmsgtype: i32,
    /// Field 8.
    pub interval: i64,
    /// Field 9.
    pub expire: i64,
    /// Field 10.
    pub times: i64,
    /// Field 11.
    pub uuid: Option<String>,
    /// Field 13.
    pub version: Option<String>,
    /// Field 14.
    pub properties: Vec<(String, String)>,
    /// Some string field was not valid UTF-8 (answered with code 11).
    pub invalid_utf8: bool,
}

/// Decoded arguments of one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `sendSync(message, timeout)`; message `None` when absent.
    SendSync(Option<Message>, i64),
    /// `sendBatchSync(messages)`.
    SendBatchSync(Vec<Message>),
    /// `sendAsync(message)`.
    SendAsync(Option<Message>),
    /// `sendDelaySync(delayMessage, timeout)`.
    SendDelaySync(Option<DelayMessage>, i64),
}

/// The four methods of `ProducerService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// sendSync
    SendSync,
    /// sendBatchSync
    SendBatchSync,
    /// sendAsync
    SendAsync,
    /// sendDelaySync
    SendDelaySync,
}

impl Method {
    /// Looks a method up by its wire name.
    pub fn from_name(name: &[u8]) -> Option<Method> {
        match name {
            b"sendSync" => Some(Method::SendSync),
            b"sendBatchSync" => Some(Method::SendBatchSync),
            b"sendAsync" => Some(Method::SendAsync),
            b"sendDelaySync" => Some(Method::SendDelaySync),
            _ => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Method::SendSync => "sendSync",
            Method::SendBatchSync => "sendBatchSync",
            Method::SendAsync => "sendAsync",
            Method::SendDelaySync => "sendDelaySync",
        }
    }

    /// Whether the reply is a `DelayResult`.
    pub fn is_delay(self) -> bool {
        self == Method::SendDelaySync
    }
}

fn read_string(r: &mut Reader<'_>, bad: &mut bool) -> Result<Option<String>, DecodeError> {
    let b = r.read_binary()?;
    match String::from_utf8(b.to_vec()) {
        Ok(s) => Ok(Some(s)),
        Err(_) => {
            *bad = true;
            Ok(None)
        }
    }
}

/// Properties are deduplicated by a linear scan up to this many; larger maps get a hash index,
/// so that a frame of a million distinct keys is not a quadratic scan (docs/RELIABILITY.md).
const LINEAR_DEDUP_MAX: usize = 16;

fn read_props(r: &mut Reader<'_>, bad: &mut bool) -> Result<Vec<(String, String)>, DecodeError> {
    let (kt, vt, n) = r.map_begin()?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(n.min(64) as usize);
    let mut index: Option<HashMap<String, usize>> = None;
    for _ in 0..n {
        if kt != TType::Binary || vt != TType::Binary {
            // Wrong element types: the whole map is unusable.
            return Err(DecodeError::ElementType);
        }
        let k = read_string(r, bad)?;
        let v = read_string(r, bad)?;
        let (Some(k), Some(v)) = (k, v) else {
            continue;
        };
        // Duplicate keys: the first position is kept, the last value wins.
        let found = match &index {
            Some(ix) => ix.get(&k).copied(),
            None => out.iter().position(|(ek, _)| *ek == k),
        };
        if let Some(i) = found {
            out[i].1 = v;
            continue;
        }
        if let Some(ix) = &mut index {
            ix.insert(k.clone(), out.len());
        }
        out.push((k, v));
        if index.is_none() && out.len() > LINEAR_DEDUP_MAX {
            let ix = out.iter().enumerate().map(|(i, (k, _))| (k.clone(), i));
            index = Some(ix.collect());
        }
    }
    Ok(out)
}

/// Decodes a `Message` struct.
pub fn read_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let mut m = Message::default();
    let mut bad = false;
    r.struct_begin()?;
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::Binary) => m.topic = read_string(r, &mut bad)?,
            (2, TType::Binary) => m.key = read_string(r, &mut bad)?,
            (3, TType::Binary) => m.value = Some(r.read_binary()?),
            (4, TType::I64) => m.hash_id = r.read_i64()?,
            (5, TType::Binary) => m.tags = read_string(r, &mut bad)?,
            (6, TType::I32) => m.partition_id = r.read_i32()?,
            (7, TType::Binary) => m.body = Some(r.read_binary()?),
            (8, TType::Binary) => m.version = read_string(r, &mut bad)?,
            (9, TType::Map) => m.properties = read_props(r, &mut bad)?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    m.invalid_utf8 = bad;
    Ok(m)
}

/// Decodes a `DelayMessage` struct.
pub fn read_delay_message(r: &mut Reader<'_>) -> Result<DelayMessage, DecodeError> {
    let mut m = DelayMessage::default();
    let mut bad = false;
    r.struct_begin()?;
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::Binary) => m.topic = read_string(r, &mut bad)?,
            (2, TType::Binary) => m.uniq_delay_msg_id = read_string(r, &mut bad)?,
            (3, TType::Binary) => m.body = Some(r.read_binary()?),
            (4, TType::Binary) => m.tags = read_string(r, &mut bad)?,
            (5, TType::I32) => m.action = r.read_i32()?,
            (6, TType::I64) => m.timestamp = r.read_i64()?,
            (7, TType::I32) => m.dmsgtype = r.read_i32()?,
            (8, TType::I64) => m.interval = r.read_i64()?,
            (9, TType::I64) => m.expire = r.read_i64()?,
            (10, TType::I64) => m.times = r.read_i64()?,
            (11, TType::Binary) => m.uuid = read_string(r, &mut bad)?,
            (13, TType::Binary) => m.version = read_string(r, &mut bad)?,
            (14, TType::Map) => m.properties = read_props(r, &mut bad)?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    m.invalid_utf8 = bad;
    Ok(m)
}

/// Decodes the argument struct of `method`.
pub fn read_call(r: &mut Reader<'_>, method: Method) -> Result<Call, DecodeError> {
    let mut msg = None;
    let mut delay = None;
    let mut batch = Vec::new();
    let mut timeout = 0i64;
    r.struct_begin()?;
    while let Some((t, id)) = r.field_begin()? {
        match (method, id, t) {
            (Method::SendSync | Method::SendAsync, 1, TType::Struct) => {
                msg = Some(read_message(r)?)
            }
            (Method::SendSync | Method::SendDelaySync, 2, TType::I64) => timeout = r.read_i64()?,
            (Method::SendDelaySync, 1, TType::Struct) => delay = Some(read_delay_message(r)?),
            (Method::SendBatchSync, 1, TType::List) => {
                let (et, n) = r.list_begin()?;
                if et != TType::Struct {
                    // Wrong element types: the arguments cannot be decoded (wire.md §3.3).
                    return Err(DecodeError::ElementType);
                }
                batch = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    batch.push(read_message(r)?);
                }
            }
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(match method {
        Method::SendSync => Call::SendSync(msg, timeout),
        Method::SendAsync => Call::SendAsync(msg),
        Method::SendBatchSync => Call::SendBatchSync(batch),
        Method::SendDelaySync => Call::SendDelaySync(delay, timeout),
    })
}

/// TApplicationException types pproxy emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum AppExceptionType {
    /// Unknown method name.
    UnknownMethod = 1,
    /// Message type other than CALL/ONEWAY.
    InvalidMessageType = 2,
    /// Arguments could not be decoded.
    ProtocolError = 7,
}

/// Encodes a successful reply frame: `<method>_result{0: success}`.
pub fn encode_reply(
    proto: Protocol,
    name: &[u8],
    seqid: i32,
    delay: bool,
    outcome: &Code,
    delay_id: &str,
) -> Bytes {
    let mut w = Writer::new(proto);
    w.message_begin(name, message_type::REPLY, seqid);
    w.struct_begin();
    w.field_begin(TType::Struct, 0);
    w.struct_begin();
    w.field_begin(TType::I32, 1);
    w.write_i32(outcome.as_i32());
    w.field_begin(TType::Binary, 2);
    w.write_binary(outcome.msg().as_bytes());
    if delay {
        w.field_begin(TType::Binary, 3);
        w.write_binary(delay_id.as_bytes());
    }
    w.struct_end();
    w.struct_end();
    w.finish()
}

/// Encodes a TApplicationException reply frame.
pub fn encode_exception(
    proto: Protocol,
    name: &[u8],
    seqid: i32,
    kind: AppExceptionType,
    message: &str,
) -> Bytes {
    let mut w = Writer::new(proto);
    w.message_begin(name, message_type::EXCEPTION, seqid);
    w.struct_begin();
    w.field_begin(TType::Binary, 1);
    w.write_binary(message.as_bytes());
    w.field_begin(TType::I32, 2);
    w.write_i32(kind as i32);
    w.struct_end();
    w.finish()
}

// ---- client side: used by the CLI, the load generator and the tests ----

fn write_props(w: &mut Writer, id: i16, props: &[(String, String)]) {
    w.field_begin(TType::Map, id);
    w.map_begin(TType::Binary, TType::Binary, props.len());
    for (k, v) in props {
        w.write_binary(k.as_bytes());
        w.write_binary(v.as_bytes());
    }
}

/// Writes a `Message` struct (client side).
pub fn write_message(w: &mut Writer, m: &Message) {
    w.struct_begin();
    if let Some(t) = &m.topic {
        w.field_begin(TType::Binary, 1);
        w.write_binary(t.as_bytes());
    }
    if let Some(k) = &m.key {
        w.field_begin(TType::Binary, 2);
        w.write_binary(k.as_bytes());
    }
    if let Some(v) = &m.value {
        w.field_begin(TType::Binary, 3);
        w.write_binary(v);
    }
    w.field_begin(TType::I64, 4);
    w.write_i64(m.hash_id);
    if let Some(t) = &m.tags {
        w.field_begin(TType::Binary, 5);
        w.write_binary(t.as_bytes());
    }
    w.field_begin(TType::I32, 6);
    w.write_i32(m.partition_id);
    if let Some(b) = &m.body {
        w.field_begin(TType::Binary, 7);
        w.write_binary(b);
    }
    if let Some(v) = &m.version {
        w.field_begin(TType::Binary, 8);
        w.write_binary(v.as_bytes());
    }
    if !m.properties.is_empty() {
        write_props(w, 9, &m.properties);
    }
    w.struct_end();
}

/// Writes a `DelayMessage` struct (client side).
pub fn write_delay_message(w: &mut Writer, m: &DelayMessage) {
    let opt_str = |w: &mut Writer, id: i16, v: &Option<String>| {
        if let Some(s) = v {
            w.field_begin(TType::Binary, id);
            w.write_binary(s.as_bytes());
        }
    };
    w.struct_begin();
    opt_str(w, 1, &m.topic);
    opt_str(w, 2, &m.uniq_delay_msg_id);
    if let Some(b) = &m.body {
        w.field_begin(TType::Binary, 3);
        w.write_binary(b);
    }
    opt_str(w, 4, &m.tags);
    w.field_begin(TType::I32, 5);
    w.write_i32(m.action);
    w.field_begin(TType::I64, 6);
    w.write_i64(m.timestamp);
    w.field_begin(TType::I32, 7);
    w.write_i32(m.dmsgtype);
    for (id, v) in [(8, m.interval), (9, m.expire), (10, m.times)] {
        w.field_begin(TType::I64, id);
        w.write_i64(v);
    }
    opt_str(w, 11, &m.uuid);
    opt_str(w, 13, &m.version);
    if !m.properties.is_empty() {
        write_props(w, 14, &m.properties);
    }
    w.struct_end();
}

/// Encodes a request frame for `call` (client side).
pub fn encode_call(proto: Protocol, seqid: i32, call: &Call) -> Bytes {
    let mut w = Writer::new(proto);
    let method = match call {
        Call::SendSync(..) => Method::SendSync,
        Call::SendAsync(..) => Method::SendAsync,
        Call::SendBatchSync(..) => Method::SendBatchSync,
        Call::SendDelaySync(..) => Method::SendDelaySync,
    };
    w.message_begin(method.name().as_bytes(), message_type::CALL, seqid);
    w.struct_begin();
    match call {
        Call::SendSync(m, t) => {
            if let Some(m) = m {
                w.field_begin(TType::Struct, 1);
                write_message(&mut w, m);
            }
            w.field_begin(TType::I64, 2);
            w.write_i64(*t);
        }
        Call::SendAsync(m) => {
            if let Some(m) = m {
                w.field_begin(TType::Struct, 1);
                write_message(&mut w, m);
            }
        }
        Call::SendBatchSync(ms) => {
            w.field_begin(TType::List, 1);
            w.list_begin(TType::Struct, ms.len());
            for m in ms {
                write_message(&mut w, m);
            }
        }
        Call::SendDelaySync(m, t) => {
            if let Some(m) = m {
                w.field_begin(TType::Struct, 1);
                write_delay_message(&mut w, m);
            }
            w.field_begin(TType::I64, 2);
            w.write_i64(*t);
        }
    }
    w.struct_end();
    w.finish()
}

/// A decoded reply (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `Result` or `DelayResult` (id empty for `Result`).
    Result {
        /// Echoed seqid.
        seqid: i32,
        /// Result code.
        code: i32,
        /// Result message.
        msg: String,
        /// DelayResult.uniqDelayMsgId, when present.
        delay_id: Option<String>,
    },
    /// TApplicationException.
    Exception {
        /// Echoed seqid.
        seqid: i32,
        /// Exception type.
        kind: i32,
        /// Exception message.
        message: String,
    },
}

/// Decodes a reply payload (without length prefix), client side.
pub fn decode_reply(payload: &Bytes) -> Result<(Bytes, Reply), DecodeError> {
    let (h, pos) = super::codec::read_header(payload)?;
    let mut r = Reader::new(payload, pos, h.protocol);
    let lossy = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
    r.struct_begin()?;
    if h.mtype == message_type::EXCEPTION {
        let (mut kind, mut message) = (0, String::new());
        while let Some((t, id)) = r.field_begin()? {
            match (id, t) {
                (1, TType::Binary) => message = lossy(r.read_binary()?),
                (2, TType::I32) => kind = r.read_i32()?,
                _ => r.skip(t)?,
            }
        }
        return Ok((
            h.name,
            Reply::Exception {
                seqid: h.seqid,
                kind,
                message,
            },
        ));
    }
    let (mut code, mut msg, mut delay_id) = (-1, String::new(), None);
    while let Some((t, id)) = r.field_begin()? {
        if id == 0 && t == TType::Struct {
            r.struct_begin()?;
            while let Some((t, id)) = r.field_begin()? {
                match (id, t) {
                    (1, TType::I32) => code = r.read_i32()?,
                    (2, TType::Binary) => msg = lossy(r.read_binary()?),
                    (3, TType::Binary) => delay_id = Some(lossy(r.read_binary()?)),
                    _ => r.skip(t)?,
                }
            }
            r.struct_end();
        } else {
            r.skip(t)?;
        }
    }
    Ok((
        h.name,
        Reply::Result {
            seqid: h.seqid,
            code,
            msg,
            delay_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::read_header;
    use crate::codes::Code;

    fn sample() -> Message {
        Message {
            topic: Some("orders".into()),
            key: Some("k-1".into()),
            value: Some(Bytes::from_static(b"legacy")),
            hash_id: -42,
            tags: Some("a||b".into()),
            partition_id: -1,
            body: Some(Bytes::from_static(b"\x00\xffbody")),
            version: Some("java-1.0".into()),
            properties: vec![("traceId".into(), "t1".into()), ("x".into(), "y".into())],
            invalid_utf8: false,
        }
    }

    fn decode(frame: &Bytes) -> Call {
        let payload = frame.slice(4..);
        let (h, pos) = read_header(&payload).unwrap();
        let m = Method::from_name(&h.name).unwrap();
        let mut r = Reader::new(&payload, pos, h.protocol);
        read_call(&mut r, m).unwrap()
    }

    #[test]
    fn calls_round_trip_both_protocols() {
        for proto in [Protocol::Compact, Protocol::Binary] {
            let calls = vec![
                Call::SendSync(Some(sample()), 50),
                Call::SendAsync(Some(sample())),
                Call::SendBatchSync(vec![sample(), Message::default(), sample()]),
                Call::SendDelaySync(
                    Some(DelayMessage {
                        topic: Some("d".into()),
                        body: Some(Bytes::from_static(b"\x80")),
                        action: 1,
                        timestamp: 1_700_000_000_000,
                        dmsgtype: 3,
                        interval: 5,
                        expire: 1_800_000_000,
                        times: 9,
                        uuid: Some("u".into()),
                        properties: vec![("a".into(), "b".into())],
                        ..Default::default()
                    }),
                    -1,
                ),
            ];
            for c in calls {
                assert_eq!(decode(&encode_call(proto, 9, &c)), c);
            }
        }
    }

    #[test]
    fn absent_partition_id_is_minus_one() {
        // compact struct with only field 1 (topic "t")
        let payload = Bytes::from_static(&[0x18, 0x01, b't', 0x00]);
        let mut r = Reader::new(&payload, 0, Protocol::Compact);
        let m = read_message(&mut r).unwrap();
        assert_eq!(m.partition_id, -1);
        assert_eq!(m.topic.as_deref(), Some("t"));
        assert_eq!(m.hash_id, 0);
    }

    #[test]
    fn wrong_type_field_is_skipped_as_absent() {
        // field 1 (topic) sent as i32 7, then field 6 as binary "x"
        let payload = Bytes::from_static(&[0x15, 0x0e, 0x58, 0x01, b'x', 0x00]);
        let mut r = Reader::new(&payload, 0, Protocol::Compact);
        let m = read_message(&mut r).unwrap();
        assert_eq!(m.topic, None);
        assert_eq!(m.partition_id, -1);
    }

    #[test]
    fn invalid_utf8_is_flagged_not_an_error() {
        let payload = Bytes::from_static(&[0x18, 0x02, 0xc3, 0x28, 0x00]);
        let mut r = Reader::new(&payload, 0, Protocol::Compact);
        let m = read_message(&mut r).unwrap();
        assert!(m.invalid_utf8);
    }

    #[test]
    fn batch_of_non_structs_is_a_decode_error() {
        let mut w = Writer::new(Protocol::Compact);
        w.struct_begin();
        w.field_begin(TType::List, 1);
        w.list_begin(TType::I32, 2);
        w.write_i32(1);
        w.write_i32(2);
        w.struct_end();
        let p = w.finish().slice(4..);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        assert!(read_call(&mut r, Method::SendBatchSync).is_err());
    }

    #[test]
    fn duplicate_property_keys_last_wins() {
        let mut w = Writer::new(Protocol::Compact);
        w.struct_begin();
        w.field_begin(TType::Map, 9);
        w.map_begin(TType::Binary, TType::Binary, 2);
        for v in ["1", "2"] {
            w.write_binary(b"k");
            w.write_binary(v.as_bytes());
        }
        w.struct_end();
        let p = w.finish().slice(4..);
        let mut r = Reader::new(&p, 0, Protocol::Compact);
        let m = read_message(&mut r).unwrap();
        assert_eq!(m.properties, vec![("k".to_string(), "2".to_string())]);
    }

    #[test]
    fn replies_decode_with_echoed_name_and_seqid() {
        for proto in [Protocol::Compact, Protocol::Binary] {
            let f = encode_reply(proto, b"sendDelaySync", -5, true, &Code::Ok, "id-1");
            let (name, reply) = decode_reply(&f.slice(4..)).unwrap();
            assert_eq!(&name[..], b"sendDelaySync");
            assert_eq!(
                reply,
                Reply::Result {
                    seqid: -5,
                    code: 0,
                    msg: "OK".into(),
                    delay_id: Some("id-1".into())
                }
            );
            let f = encode_exception(proto, b"zz", 3, AppExceptionType::UnknownMethod, "m");
            let (_, reply) = decode_reply(&f.slice(4..)).unwrap();
            assert_eq!(
                reply,
                Reply::Exception {
                    seqid: 3,
                    kind: 1,
                    message: "m".into()
                }
            );
        }
    }
}
