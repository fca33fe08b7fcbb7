//! Inputs kept from the cargo-fuzz campaigns (fuzz/, docs/RELIABILITY.md "Fuzzing"): hostile
//! frames, ids and documents must end in a clean error (or a clean value), never in a panic, a
//! hang or an allocation sized by a declared length.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pproxy::config::model::{parse_topic_info, ProxyConfig};
use pproxy::config::settings::Settings;
use pproxy::proto::codec::{read_header, DecodeError, Protocol, Reader};
use pproxy::proto::types::{decode_reply, encode_call, read_call, read_message};
use pproxy::proto::{Call, DelayMessage, Message, Method};
use scheduler::DelayId;

/// Decodes a whole request payload (no length prefix) the way `handle_frame` does.
fn decode(payload: &[u8]) -> Result<Call, DecodeError> {
    let p = Bytes::copy_from_slice(payload);
    let (h, pos) = read_header(&p)?;
    let method = Method::from_name(&h.name).ok_or(DecodeError::Header)?;
    read_call(&mut Reader::new(&p, pos, h.protocol), method)
}

/// Runs `f` on a thread and fails if it has not returned within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

fn sample_calls() -> Vec<Call> {
    let m = Message {
        topic: Some("orders".into()),
        key: Some("k".into()),
        body: Some(Bytes::from_static(b"\x00\xff")),
        properties: vec![("a".into(), "b".into())],
        ..Message::default()
    };
    vec![
        Call::SendSync(Some(m.clone()), 50),
        Call::SendAsync(Some(m.clone())),
        Call::SendBatchSync(vec![m.clone(), Message::default()]),
        Call::SendDelaySync(
            Some(DelayMessage {
                topic: Some("d".into()),
                uniq_delay_msg_id: Some("id".into()),
                action: 2,
                ..DelayMessage::default()
            }),
            -1,
        ),
    ]
}

#[test]
fn every_truncation_of_a_valid_request_is_an_error() {
    for proto in [Protocol::Compact, Protocol::Binary] {
        for call in sample_calls() {
            let frame = encode_call(proto, 3, &call);
            let payload = &frame[4..];
            assert_eq!(decode(payload).as_ref(), Ok(&call));
            // The argument struct ends with its STOP byte: any shorter payload misses it.
            for cut in 0..payload.len() {
                assert!(decode(&payload[..cut]).is_err(), "{proto:?} cut at {cut}");
            }
        }
    }
}

#[test]
fn huge_declared_lengths_are_length_errors() {
    // compact sendSync, message field 1 (topic) declared 2^32-1 bytes long
    let c = b"\x82\x21\x01\x08sendSync\x1c\x18\xff\xff\xff\xff\x0f";
    assert_eq!(decode(c), Err(DecodeError::Length(u32::MAX as i64)));
    // binary sendSync, topic of declared length i32::MAX, then of length -1
    let mut b = b"\x80\x01\x00\x01\x00\x00\x00\x08sendSync\x00\x00\x00\x01".to_vec();
    b.extend_from_slice(b"\x0c\x00\x01\x0b\x00\x01");
    let mut max = b.clone();
    max.extend_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(decode(&max), Err(DecodeError::Length(i32::MAX as i64)));
    let mut neg = b.clone();
    neg.extend_from_slice(&(-1i32).to_be_bytes());
    neg.extend_from_slice(b"abcd");
    assert_eq!(decode(&neg), Err(DecodeError::Length(-1)));
    // binary sendBatchSync: a list of i32::MAX structs in a few bytes
    let mut batch = b"\x80\x01\x00\x01\x00\x00\x00\x0dsendBatchSync\x00\x00\x00\x01".to_vec();
    batch.extend_from_slice(b"\x0f\x00\x01\x0c\x7f\xff\xff\xff\x00\x00");
    assert_eq!(decode(&batch), Err(DecodeError::Length(i32::MAX as i64)));
    // compact properties map of 2^31 entries
    let props = Bytes::from_static(b"\x9b\xff\xff\xff\xff\x07\x88");
    let r = read_message(&mut Reader::new(&props, 0, Protocol::Compact));
    assert_eq!(r, Err(DecodeError::Length(i32::MAX as i64)));
}

#[test]
fn bad_headers_are_header_errors() {
    for payload in [
        &b""[..],
        b"\x00\x00\x00\x00",
        // compact, method name declared 2^32-1 bytes long
        b"\x82\x21\x01\xff\xff\xff\xff\x0fsendSync",
        // compact, seqid varint longer than 5 bytes
        b"\x82\x21\xff\xff\xff\xff\xff\x01\x08sendSync",
        // compact, wrong version nibble
        b"\x82\x22\x01\x08sendSync\x00",
        // binary, negative method name length
        b"\x80\x01\x00\x01\xff\xff\xff\xf8sendSync\x00\x00\x00\x01",
        // binary, header cut inside the seqid
        b"\x80\x01\x00\x01\x00\x00\x00\x08sendSync\x00\x00",
    ] {
        let p = Bytes::copy_from_slice(payload);
        assert_eq!(
            read_header(&p).map(|_| ()),
            Err(DecodeError::Header),
            "{payload:x?}"
        );
    }
}

#[test]
fn deep_nesting_in_unknown_fields_is_a_depth_error() {
    // sendSync argument field 3 (unknown): a list of one list of one list ... 10 000 deep
    let mut lists = b"\x82\x21\x01\x08sendSync\x39".to_vec();
    lists.extend(std::iter::repeat_n(0x19u8, 10_000));
    assert_eq!(decode(&lists), Err(DecodeError::Depth));
    // the same with structs: field 1 of type struct, 10 000 times
    let mut structs = b"\x82\x21\x01\x08sendSync\x3c".to_vec();
    structs.extend(std::iter::repeat_n(0x1cu8, 10_000));
    assert_eq!(decode(&structs), Err(DecodeError::Depth));
}

#[test]
fn wrongly_typed_containers_are_element_type_errors() {
    // compact sendBatchSync whose list holds i32s
    assert_eq!(
        decode(b"\x82\x21\x01\x0dsendBatchSync\x19\x25\x02\x04\x00"),
        Err(DecodeError::ElementType)
    );
    // compact message whose properties map is i32 -> binary
    let p = Bytes::from_static(b"\x9b\x01\x58\x02\x01x\x00");
    let r = read_message(&mut Reader::new(&p, 0, Protocol::Compact));
    assert_eq!(r, Err(DecodeError::ElementType));
}

#[test]
fn many_distinct_properties_decode_in_linear_time() {
    // 400 000 distinct 6-byte keys with empty values: 3.2 MB, within the default
    // maxReadBufferBytes. Deduplication used to scan the list per key (quadratic: minutes).
    let n: u32 = 400_000;
    let mut p = vec![0x9b];
    let mut v = n;
    while v >= 0x80 {
        p.push((v as u8) | 0x80);
        v >>= 7;
    }
    p.push(v as u8);
    p.push(0x88);
    for i in 0..n {
        p.push(6);
        p.extend_from_slice(format!("{i:06}").as_bytes());
        p.push(0);
    }
    p.push(0);
    let p = Bytes::from(p);
    let start = Instant::now();
    let m = within(Duration::from_secs(20), move || {
        read_message(&mut Reader::new(&p, 0, Protocol::Compact))
    })
    .unwrap();
    assert_eq!(m.properties.len(), n as usize);
    assert!(!m.invalid_utf8);
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn duplicate_properties_keep_first_position_and_last_value() {
    let mut w = pproxy::proto::codec::Writer::new(Protocol::Compact);
    w.struct_begin();
    w.field_begin(pproxy::proto::codec::TType::Map, 9);
    w.map_begin(
        pproxy::proto::codec::TType::Binary,
        pproxy::proto::codec::TType::Binary,
        4,
    );
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
        w.write_binary(k.as_bytes());
        w.write_binary(v.as_bytes());
    }
    w.struct_end();
    let p = w.finish().slice(4..);
    let m = read_message(&mut Reader::new(&p, 0, Protocol::Compact)).unwrap();
    let props: Vec<(&str, &str)> = m
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(props, [("a", "3"), ("b", "2"), ("c", "4")]);
}

#[test]
fn garbage_replies_are_errors() {
    for payload in [
        &b"\x82\x41\x01\x01m\x0c"[..],
        b"\x82\x61\x01\x01m\x19\xff\xff\xff\xff\x0f",
        b"\x80\x01\x00\x02\x00\x00\x00\x01m\x00\x00\x00\x01\x0c\x00\x00\x0b\x00\x02\x80\x00\x00\x00",
    ] {
        assert!(decode_reply(&Bytes::copy_from_slice(payload)).is_err(), "{payload:x?}");
    }
}

#[test]
fn delay_id_edge_cases() {
    let uuid = "14f22520-ad72-11e7-91be-6ee54da579e3";
    let max = format!("{}-2-0-0-0-0-0-{uuid}", i64::MAX);
    assert_eq!(DelayId::parse(&max).map(|d| d.timestamp), Some(i64::MAX));
    for bad in [
        format!("9223372036854775808-2-0-0-0-0-0-{uuid}"), // i64::MAX + 1, 19 digits
        format!("+1-2-0-0-0-0-0-{uuid}"),                  // sign accepted by i64::from_str
        format!("1-2-0-0-0-0-0-{uuid}-"),                  // 13 parts
        "1-2-0-0-0-0-0-14f225é-ad72-11e7-91be-6ee54da579e3".to_string(), // 8 bytes, 7 chars
        "-----------".to_string(),
    ] {
        assert_eq!(DelayId::parse(&bad), None, "{bad}");
    }
    // Leading zeros parse; printing normalises them and parses to the same id.
    let d = DelayId::parse(&format!("0001507609164-02-0-0-0-0-0-{uuid}")).unwrap();
    assert_eq!(d.to_string(), format!("1507609164-2-0-0-0-0-0-{uuid}"));
    assert_eq!(DelayId::parse(&d.to_string()), Some(d));
}

/// `canonical_of`, run on every cancel id and by `GET /delay/{id}`, used to spin for ~timed^2
/// steps on an exponential id with interval 0 or 1 (scheduler/src/record.rs `offset_sec`).
#[test]
fn exponential_cancel_id_with_unit_interval_is_answered_promptly() {
    let uuid = "14f22520-ad72-11e7-91be-6ee54da579e3";
    let base = "1700000000-4-1800000000-999999999999";
    // interval 0: every gap is 0, the add id has the same timestamp
    let id = format!("{base}-999999999998-0-0-{uuid}");
    let got = within(Duration::from_secs(5), move || DelayId::canonical_of(&id));
    assert_eq!(got, format!("{base}-0-0-0-{uuid}"));
    // interval 1: the add would lie before 2001, so the id stands for itself
    let id = format!("{base}-999999999998-1-0-{uuid}");
    let raw = id.clone();
    let got = within(Duration::from_secs(5), move || DelayId::canonical_of(&id));
    assert_eq!(got, raw);
}

#[test]
fn hostile_config_documents_are_rejected() {
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(ProxyConfig::parse(&deep_json, false).is_err());
    let deep_obj = format!(
        r#"{{"brokerClusters":["a"],"carreraConfiguration":{}1{}}}"#,
        r#"{"x":"#.repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(ProxyConfig::parse(&deep_obj, false).is_err());
    for bad in [
        r#"{"brokerClusters":["a"],"carreraConfiguration":{"maxTps":-1e300}}"#,
        r#"{"brokerClusters":["a"],"carreraConfiguration":{"tpsWarningRatio":"NaN"}}"#,
        r#"{"brokerClusters":["a"],"carreraConfiguration":{"maxTps":"0.5"}}"#,
        r#"{"brokerClusters":[1],"carreraConfiguration":{}}"#,
    ] {
        assert!(ProxyConfig::parse(bad, false).is_err(), "{bad}");
    }
    let topics = serde_json::json!({"topics": [{"topic": "t", "topicUnits": [{"proxies": 7}]}]});
    assert!(parse_topic_info(&topics).is_err());

    let deep_yaml = "[".repeat(100_000);
    assert!(Settings::parse(&deep_yaml).is_err());
    // Nine levels of nine aliases: 9^9 nodes if expanded.
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    let r = within(Duration::from_secs(10), move || {
        Settings::parse(&bomb).map(|_| ())
    });
    assert!(r.is_err());
    assert!(Settings::parse("port: 0\n").is_err());
    assert!(Settings::parse("port: 70000\n").is_err());
}
