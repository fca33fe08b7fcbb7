//! Cross-checks pproxy's hand-written codec against the Apache `thrift` crate's own compact and
//! binary protocols: requests written by the crate decode in pproxy, replies written by pproxy
//! decode in the crate.

use std::collections::BTreeMap;

use bytes::Bytes;
use pproxy::proto::codec::{read_header, Protocol, Reader};
use pproxy::proto::types::{encode_reply, read_call};
use pproxy::proto::{Call, Code, Method};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TFieldIdentifier, TInputProtocol, TMapIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TStructIdentifier, TType,
};

fn write_send_sync(o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
    o.write_message_begin(&TMessageIdentifier::new("sendSync", TMessageType::Call, 77))?;
    o.write_struct_begin(&TStructIdentifier::new("sendSync_args"))?;
    o.write_field_begin(&TFieldIdentifier::new("message", TType::Struct, 1))?;
    o.write_struct_begin(&TStructIdentifier::new("Message"))?;
    o.write_field_begin(&TFieldIdentifier::new("topic", TType::String, 1))?;
    o.write_string("orders")?;
    o.write_field_end()?;
    o.write_field_begin(&TFieldIdentifier::new("key", TType::String, 2))?;
    o.write_string("k€y")?;
    o.write_field_end()?;
    o.write_field_begin(&TFieldIdentifier::new("hashId", TType::I64, 4))?;
    o.write_i64(-123_456_789_012)?;
    o.write_field_end()?;
    o.write_field_begin(&TFieldIdentifier::new("tags", TType::String, 5))?;
    o.write_string("a||b")?;
    o.write_field_end()?;
    // partitionId (6) omitted: must decode as -1.
    o.write_field_begin(&TFieldIdentifier::new("body", TType::String, 7))?;
    o.write_bytes(&[0, 1, 2, 255])?;
    o.write_field_end()?;
    // An unknown field id with a nested container is skipped.
    o.write_field_begin(&TFieldIdentifier::new("future", TType::Map, 40))?;
    o.write_map_begin(&TMapIdentifier::new(TType::I32, TType::Bool, 2))?;
    for (k, v) in [(1, true), (2, false)] {
        o.write_i32(k)?;
        o.write_bool(v)?;
    }
    o.write_map_end()?;
    o.write_field_end()?;
    o.write_field_begin(&TFieldIdentifier::new("properties", TType::Map, 9))?;
    let props: BTreeMap<&str, &str> = [("traceId", "t-1"), ("spanId", "s-1")].into();
    o.write_map_begin(&TMapIdentifier::new(
        TType::String,
        TType::String,
        props.len() as i32,
    ))?;
    for (k, v) in props {
        o.write_string(k)?;
        o.write_string(v)?;
    }
    o.write_map_end()?;
    o.write_field_end()?;
    o.write_field_stop()?;
    o.write_struct_end()?;
    o.write_field_end()?;
    o.write_field_begin(&TFieldIdentifier::new("timeout", TType::I64, 2))?;
    o.write_i64(50)?;
    o.write_field_end()?;
    o.write_field_stop()?;
    o.write_struct_end()?;
    o.write_message_end()?;
    o.flush()
}

fn check_decoded(buf: Vec<u8>, proto: Protocol) {
    let payload = Bytes::from(buf);
    let (h, pos) = read_header(&payload).expect("header");
    assert_eq!(h.protocol, proto);
    assert_eq!((h.seqid, &h.name[..]), (77, &b"sendSync"[..]));
    let mut r = Reader::new(&payload, pos, proto);
    let Call::SendSync(Some(m), timeout) = read_call(&mut r, Method::SendSync).expect("args")
    else {
        panic!("not a sendSync");
    };
    assert_eq!(timeout, 50);
    assert_eq!(m.topic.as_deref(), Some("orders"));
    assert_eq!(m.key.as_deref(), Some("k€y"));
    assert_eq!(m.hash_id, -123_456_789_012);
    assert_eq!(m.tags.as_deref(), Some("a||b"));
    assert_eq!(m.partition_id, -1);
    assert_eq!(m.body.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert_eq!(m.properties.len(), 2);
    assert!(m.properties.contains(&("traceId".into(), "t-1".into())));
    assert!(!m.invalid_utf8);
}

#[test]
fn requests_written_by_the_thrift_crate_decode() {
    let mut buf = Vec::new();
    write_send_sync(&mut TCompactOutputProtocol::new(&mut buf)).expect("write compact");
    check_decoded(buf, Protocol::Compact);
    let mut buf = Vec::new();
    write_send_sync(&mut TBinaryOutputProtocol::new(&mut buf, true)).expect("write binary");
    check_decoded(buf, Protocol::Binary);
}

fn read_result(i: &mut dyn TInputProtocol) -> thrift::Result<(String, i32, i32, String, String)> {
    let m = i.read_message_begin()?;
    assert_eq!(m.message_type, TMessageType::Reply);
    i.read_struct_begin()?;
    let f = i.read_field_begin()?;
    assert_eq!(
        (f.field_type, f.id),
        (TType::Struct, Some(0)),
        "success field"
    );
    i.read_struct_begin()?;
    let (mut code, mut msg, mut id) = (-1, String::new(), String::new());
    loop {
        let f = i.read_field_begin()?;
        match (f.field_type, f.id) {
            (TType::Stop, _) => break,
            (TType::I32, Some(1)) => code = i.read_i32()?,
            (TType::String, Some(2)) => msg = i.read_string()?,
            (TType::String, Some(3)) => id = i.read_string()?,
            (t, _) => i.skip(t)?,
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    i.read_field_end()?;
    assert_eq!(i.read_field_begin()?.field_type, TType::Stop);
    i.read_struct_end()?;
    Ok((m.name, m.sequence_number, code, msg, id))
}

#[test]
fn replies_written_by_pproxy_decode_in_the_thrift_crate() {
    let outcome = Code::Illegal;
    let compact = encode_reply(
        Protocol::Compact,
        b"sendDelaySync",
        -9,
        true,
        &outcome,
        "id-9",
    );
    let got = read_result(&mut TCompactInputProtocol::new(&compact[4..])).expect("compact");
    assert_eq!(
        got,
        (
            "sendDelaySync".into(),
            -9,
            11,
            "FAILED: Message is too large or illegal or the length is 0".into(),
            "id-9".into()
        )
    );
    let binary = encode_reply(Protocol::Binary, b"sendSync", 5, false, &Code::Ok, "");
    let got = read_result(&mut TBinaryInputProtocol::new(&binary[4..], true)).expect("binary");
    assert_eq!(got, ("sendSync".into(), 5, 0, "OK".into(), String::new()));
}
