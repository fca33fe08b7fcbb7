//! The wire contract (wire.md) against a real pproxy process in embedded mode: framing,
//! protocol detection, message types, errors that keep the connection, limits, delay codes.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use pproxy::client::{Client, ClientError};
use pproxy::proto::codec::{message_type, Protocol, TType, Writer};
use pproxy::proto::types::{decode_reply, encode_call, write_message, Reply};
use pproxy::proto::{Call, DelayMessage, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn embedded() -> Proxy {
    Proxy::start("embeddedDelayTopics: [delay_t, delay_t2]\n")
}

fn raw_call(proto: Protocol, name: &[u8], mtype: u8, seqid: i32, m: Option<&Message>) -> Bytes {
    let mut w = Writer::new(proto);
    w.message_begin(name, mtype, seqid);
    w.struct_begin();
    if let Some(m) = m {
        w.field_begin(TType::Struct, 1);
        write_message(&mut w, m);
        w.field_begin(TType::I64, 2);
        w.write_i64(1000);
    }
    w.struct_end();
    w.finish()
}

async fn read_reply(s: &mut TcpStream) -> (Bytes, Reply) {
    let len = tokio::time::timeout(Duration::from_secs(10), s.read_i32())
        .await
        .expect("reply in time")
        .expect("reply frame");
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.expect("payload");
    decode_reply(&Bytes::from(buf)).expect("decodable reply")
}

async fn expect_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("close in time");
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "connection should be closed, got {r:?}"
    );
}

async fn heartbeat_ok(s: &mut TcpStream, seqid: i32) {
    let hb = msg("carrera_heartbeat", b"");
    s.write_all(&raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::CALL,
        seqid,
        Some(&hb),
    ))
    .await
    .expect("write");
    let (_, r) = read_reply(s).await;
    assert_eq!(
        r,
        Reply::Result {
            seqid,
            code: 0,
            msg: "OK".into(),
            delay_id: None
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqid_and_method_name_are_echoed_in_both_protocols() {
    let p = embedded();
    for proto in [Protocol::Compact, Protocol::Binary] {
        let mut s = TcpStream::connect(&p.addr).await.expect("connect");
        for seqid in [0, 0, 12345, -7, i32::MAX] {
            let m = msg("wire_echo", b"x");
            s.write_all(&raw_call(
                proto,
                b"sendSync",
                message_type::CALL,
                seqid,
                Some(&m),
            ))
            .await
            .expect("write");
            let (name, r) = read_reply(&mut s).await;
            assert_eq!(&name[..], b"sendSync");
            assert_eq!(
                r,
                Reply::Result {
                    seqid,
                    code: 0,
                    msg: "OK".into(),
                    delay_id: None
                }
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_keep_the_connection() {
    let p = embedded();
    let mut s = TcpStream::connect(&p.addr).await.expect("connect");

    // Unknown method (old Python/PHP IDL).
    s.write_all(&raw_call(
        Protocol::Compact,
        b"sendNotifySync",
        message_type::CALL,
        3,
        None,
    ))
    .await
    .expect("write");
    let (name, r) = read_reply(&mut s).await;
    assert_eq!(&name[..], b"sendNotifySync");
    assert_eq!(
        r,
        Reply::Exception {
            seqid: 3,
            kind: 1,
            message: "Invalid method name: 'sendNotifySync'".into()
        }
    );
    heartbeat_ok(&mut s, 4).await;

    // A REPLY sent to the server.
    s.write_all(&raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::REPLY,
        5,
        None,
    ))
    .await
    .expect("write");
    let (_, r) = read_reply(&mut s).await;
    assert!(
        matches!(
            r,
            Reply::Exception {
                seqid: 5,
                kind: 2,
                ..
            }
        ),
        "{r:?}"
    );
    heartbeat_ok(&mut s, 6).await;

    // Truncated argument struct inside a well-formed frame.
    let full = raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::CALL,
        7,
        Some(&msg("t", b"body")),
    );
    let cut = &full[4..full.len() - 6];
    let mut frame = (cut.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(cut);
    s.write_all(&frame).await.expect("write");
    let (_, r) = read_reply(&mut s).await;
    assert!(
        matches!(
            r,
            Reply::Exception {
                seqid: 7,
                kind: 7,
                ..
            }
        ),
        "{r:?}"
    );
    heartbeat_ok(&mut s, 8).await;

    // A container length larger than the frame.
    let mut w = Writer::new(Protocol::Compact);
    w.message_begin(b"sendBatchSync", message_type::CALL, 9);
    w.struct_begin();
    w.field_begin(TType::List, 1);
    w.write_raw(&[0xfc, 0xff, 0xff, 0xff, 0x0f]);
    s.write_all(&w.finish()).await.expect("write");
    let (_, r) = read_reply(&mut s).await;
    assert!(
        matches!(
            r,
            Reply::Exception {
                seqid: 9,
                kind: 7,
                ..
            }
        ),
        "{r:?}"
    );
    heartbeat_ok(&mut s, 10).await;

    // Invalid UTF-8 in the topic: a normal result 11.
    let mut w = Writer::new(Protocol::Compact);
    w.message_begin(b"sendSync", message_type::CALL, 11);
    w.struct_begin();
    w.field_begin(TType::Struct, 1);
    w.struct_begin();
    w.field_begin(TType::Binary, 1);
    w.write_binary(&[0xc3, 0x28]);
    w.field_begin(TType::Binary, 7);
    w.write_binary(b"body");
    w.struct_end();
    w.struct_end();
    s.write_all(&w.finish()).await.expect("write");
    let (_, r) = read_reply(&mut s).await;
    assert!(
        matches!(
            r,
            Reply::Result {
                seqid: 11,
                code: 11,
                ..
            }
        ),
        "{r:?}"
    );

    // Absent message struct (null topic in DDMQ closed the connection): 11.
    s.write_all(&raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::CALL,
        12,
        None,
    ))
    .await
    .expect("write");
    let (_, r) = read_reply(&mut s).await;
    assert!(
        matches!(
            r,
            Reply::Result {
                seqid: 12,
                code: 11,
                ..
            }
        ),
        "{r:?}"
    );
    heartbeat_ok(&mut s, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_gets_no_reply_and_pipelined_frames_answer_in_order() {
    let p = embedded();
    let mut s = TcpStream::connect(&p.addr).await.expect("connect");
    let m = msg("wire_oneway", b"x");
    let mut bytes = raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::ONEWAY,
        1,
        Some(&m),
    )
    .to_vec();
    for seqid in 2..=6 {
        bytes.extend_from_slice(&raw_call(
            Protocol::Compact,
            b"sendSync",
            message_type::CALL,
            seqid,
            Some(&m),
        ));
    }
    s.write_all(&bytes).await.expect("write");
    for seqid in 2..=6 {
        let (_, r) = read_reply(&mut s).await;
        assert_eq!(
            r,
            Reply::Result {
                seqid,
                code: 0,
                msg: "OK".into(),
                delay_id: None
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_violations_close_only_that_connection() {
    let p = embedded();
    let cases: [&[u8]; 4] = [
        &[0, 0, 0, 0],                         // zero length
        &[0xff, 0xff, 0xff, 0xf0],             // negative length
        &[0x80, 0x01, 0x00, 0x01, 0, 0, 0, 8], // unframed binary
        &[0, 0, 0, 3, 0x42, 0x42, 0x42],       // unsupported protocol byte
    ];
    let mut keeper = TcpStream::connect(&p.addr).await.expect("connect");
    for bytes in cases {
        let mut s = TcpStream::connect(&p.addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        expect_closed(&mut s).await;
    }
    heartbeat_ok(&mut keeper, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_answer_11_without_closing() {
    let p = embedded();
    let mut s = TcpStream::connect(&p.addr).await.expect("connect");
    let big = vec![b'x'; 5_000_001];
    for (name, delay) in [(&b"sendSync"[..], false), (&b"sendDelaySync"[..], true)] {
        let frame = if delay {
            let dm = DelayMessage {
                topic: Some("delay_t".into()),
                body: Some(Bytes::from(big.clone())),
                action: 1,
                ..Default::default()
            };
            encode_call(Protocol::Compact, 21, &Call::SendDelaySync(Some(dm), 1000))
        } else {
            raw_call(
                Protocol::Compact,
                name,
                message_type::CALL,
                21,
                Some(&msg("t", &big)),
            )
        };
        assert!(frame.len() > 5_000_004);
        s.write_all(&frame).await.expect("write");
        let (got_name, r) = read_reply(&mut s).await;
        assert_eq!(&got_name[..], name);
        let expected_id = delay.then(String::new);
        assert_eq!(
            r,
            Reply::Result {
                seqid: 21,
                code: 11,
                msg: "FAILED: Message is too large or illegal or the length is 0".into(),
                delay_id: expected_id
            }
        );
    }
    heartbeat_ok(&mut s, 22).await;
    // A frame announcing 2 GB with garbage where the header should be: closed, nothing buffered.
    let mut s = TcpStream::connect(&p.addr).await.expect("connect");
    let mut bytes = 0x7fff_ffffu32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x55; 70_000]);
    let _ = s.write_all(&bytes).await;
    expect_closed(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_connections_and_idle_ones_are_kept() {
    let p = embedded();
    let mut idle = p.client().await;
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let addr = p.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, Protocol::Compact, Duration::from_secs(30)).await?;
            let r = c
                .call(&Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000))
                .await?;
            Ok::<_, ClientError>((i, r, c))
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (_, r, c) = t.await.expect("task").expect("call");
        assert!(matches!(r, Reply::Result { code: 0, .. }));
        clients.push(c);
    }
    let (_, status) = p.http_get("/status").expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert!(v["connections"].as_u64().unwrap_or(0) >= 2000, "{v}");
    drop(clients);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, _, _) = call(
        &mut idle,
        &Call::SendSync(Some(msg("wire_idle", b"x")), 1000),
    )
    .await;
    assert_eq!(code, 0, "idle connection still served");
}

fn delay(topic: &str, action: i32, f: impl FnOnce(&mut DelayMessage)) -> Call {
    let now = chrono::Utc::now().timestamp();
    let mut d = DelayMessage {
        topic: Some(topic.into()),
        body: Some(Bytes::from_static(b"payload")),
        action,
        timestamp: now + 60,
        dmsgtype: 2,
        uuid: Some("14f22520-ad72-11e7-91be-6ee54da579e3".into()),
        ..Default::default()
    };
    f(&mut d);
    Call::SendDelaySync(Some(d), 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_validation_codes_add_and_cancel() {
    let p = embedded();
    let mut c = p.client().await;
    let now = chrono::Utc::now().timestamp();
    let id = "1507609164-2-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3";
    let cases: Vec<(Call, i32, &str)> = vec![
        (delay("", 1, |_| {}), 11, ""),
        (delay("delay_t", 1, |d| d.body = None), 11, ""),
        (
            delay("delay_t", 1, |d| {
                d.properties = vec![("KEYS".into(), "x".into())]
            }),
            11,
            "",
        ),
        (delay("bad name!", 1, |_| {}), 13, ""),
        (delay("plain_topic", 1, |_| {}), 18, ""),
        (delay("delay_t", 7, |_| {}), 32, ""),
        (
            delay("delay_t", 2, |d| d.uniq_delay_msg_id = Some(" ".into())),
            30,
            " ",
        ),
        (
            delay("delay_t", 2, |d| {
                d.uniq_delay_msg_id = Some("garbage".into())
            }),
            30,
            "garbage",
        ),
        (
            delay("delay_t", 2, |d| {
                d.uniq_delay_msg_id = Some(
                    "1507609164-5-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3".into(),
                )
            }),
            31,
            "1507609164-5-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3",
        ),
        (
            delay("delay_t", 2, |d| {
                d.uniq_delay_msg_id = Some(
                    "1507609164-2-1507781964-0-0-0-3-14f22520-ad72-11e7-91be-6ee54da579e3".into(),
                )
            }),
            34,
            "1507609164-2-1507781964-0-0-0-3-14f22520-ad72-11e7-91be-6ee54da579e3",
        ),
        (delay("delay_t", 1, |d| d.timestamp = 999_999_999), 33, ""),
        (
            delay("delay_t", 1, |d| d.timestamp = now + 63 * 86_400),
            33,
            "",
        ),
        (delay("delay_t", 1, |d| d.dmsgtype = 0), 31, ""),
        (delay("delay_t", 1, |d| d.times = 1), 35, ""),
        (
            delay("delay_t", 1, |d| {
                d.dmsgtype = 3;
                d.times = 0;
            }),
            35,
            "",
        ),
        (
            delay("delay_t", 1, |d| {
                d.dmsgtype = 3;
                d.times = 2;
                d.interval = 5;
                d.expire = d.timestamp;
            }),
            36,
            "",
        ),
        (
            delay("delay_t", 1, |d| {
                d.dmsgtype = 3;
                d.times = 2;
                d.interval = 2;
                d.expire = d.timestamp + 100;
            }),
            37,
            "",
        ),
        (
            delay("delay_t", 1, |d| {
                d.dmsgtype = 4;
                d.times = 2;
                d.interval = 1;
                d.expire = d.timestamp + 100;
            }),
            38,
            "",
        ),
    ];
    for (call_, want, want_id) in cases {
        let (code, _, got_id) = call(&mut c, &call_).await;
        assert_eq!(
            (code, got_id.as_deref()),
            (want, Some(want_id)),
            "{call_:?}"
        );
    }
    // A valid add answers 0 with the deterministic id; the same add again gives the same id.
    let ts = now + 600;
    let (code, text, got_id) = call(&mut c, &delay("delay_t", 1, |d| d.timestamp = ts)).await;
    let want = format!(
        "{ts}-2-{}-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3",
        ts + 172_800
    );
    assert_eq!(
        (code, text.as_str(), got_id.as_deref()),
        (0, "OK", Some(want.as_str()))
    );
    let (code, _, again) = call(&mut c, &delay("delay_t", 1, |d| d.timestamp = ts)).await;
    assert_eq!((code, again.as_deref()), (0, Some(want.as_str())));
    // Cancel from another delay topic: 30, not cancelled; from its own topic: 0.
    let (code, _, _) = call(
        &mut c,
        &delay("delay_t2", 2, |d| d.uniq_delay_msg_id = Some(want.clone())),
    )
    .await;
    assert_eq!(code, 30);
    let (code, _, echoed) = call(
        &mut c,
        &delay("delay_t", 2, |d| d.uniq_delay_msg_id = Some(want.clone())),
    )
    .await;
    assert_eq!((code, echoed.as_deref()), (0, Some(want.as_str())));
    // Cancel of an unknown but well-formed id: 0, and visible in the status API.
    let (code, _, _) = call(
        &mut c,
        &delay("delay_t", 2, |d| d.uniq_delay_msg_id = Some(id.into())),
    )
    .await;
    assert_eq!(code, 0);
    let (status, body) = p.http_get(&format!("/delay/{want}")).expect("status");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "cancelled", "{v}");
    let (_, body) = p.http_get(&format!("/delay/{id}")).expect("status");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "unknown", "{v}");
    assert_eq!(v["cancelRequests"][0]["result"], "unknown", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_node_answers_20_to_new_requests() {
    // A broker that never answers keeps one request in flight while the node drains.
    let dead = format!("127.0.0.1:{}", free_port());
    let doc = local_config(&dead, &[("orders", "")], "");
    let mut p = Proxy::start_with_files(
        "localConfig: local.json\nserver:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n  shutdownDrainMs: 5000\n",
        &[("local.json", doc)],
    );
    let mut busy = p.client().await;
    let mut other = p.client().await;
    let inflight = tokio::spawn(async move {
        call(&mut busy, &Call::SendSync(Some(msg("orders", b"x")), 2500)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid_stop = std::thread::spawn(move || p.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, text, _) = call(
        &mut other,
        &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (20, "FAILED: Server is shutting down.")
    );
    let (code, _, _) = inflight.await.expect("in-flight request answered");
    assert_eq!(code, 12, "the in-flight request still got its answer");
    assert_eq!(
        pid_stop.join().expect("stop"),
        Some(0),
        "clean exit after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_but_unsent_frames_neither_stall_others_nor_live_forever() {
    // 60 connections announce 4 MB frames (within the 5 MB limit) and send almost nothing: 240 MB
    // announced against a 64 MB read budget. Budget is taken only for bytes that arrive, so a
    // well-behaved client is still served; and each stalled frame is dropped after
    // frameReadTimeoutMs.
    let p = Proxy::start("server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n  maxInflightBytes: 67108864\n  frameReadTimeoutMs: 1500\n");
    let mut attackers = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(&p.addr).await.expect("connect");
        s.write_all(&4_000_000u32.to_be_bytes())
            .await
            .expect("header");
        s.write_all(&[0x82]).await.expect("one byte");
        attackers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut good = Client::connect(&p.addr, Protocol::Compact, Duration::from_secs(1))
        .await
        .expect("connect");
    let (code, _, _) = call(
        &mut good,
        &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000),
    )
    .await;
    assert_eq!(code, 0, "served while 240 MB are announced");
    // The stalled frames are closed by the frame deadline.
    for s in &mut attackers {
        expect_closed(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_closed_after_the_write_timeout_and_others_are_served() {
    // Not beside the ten-thousand-connection tests: their socket buffers put the kernel's TCP
    // memory under pressure, which changes how the buffers this test fills behave (it once
    // failed in CI running beside them: the peer was not closed within 60 s).
    let _many = MANY.lock().await;
    // Issue 20: a client pipelines heartbeats and never reads a reply. Its receive buffer (made
    // small) and then pproxy's send buffer fill, the reply write blocks, and after
    // writeTimeoutMs the connection is closed. Meanwhile another client is served.
    let p = Proxy::start(
        "server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n  writeTimeoutMs: 1000\n",
    );
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let s = socket
        .connect(p.addr.parse().expect("addr"))
        .await
        .expect("connect");
    let hb = msg("carrera_heartbeat", b"");
    let frame = raw_call(
        Protocol::Compact,
        b"sendSync",
        message_type::CALL,
        1,
        Some(&hb),
    );
    let (_rd, mut wr) = s.into_split();
    // Writes until pproxy stops reading (it is blocked writing) and then closes: the write
    // fails, or stays blocked until the test ends.
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        while wr.write_all(&frame).await.is_ok() {
            sent += 1;
        }
        sent
    });
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = p.http_get("/metrics").expect("metrics");
        if metrics.contains("pproxy_connections_closed_total{reason=\"write_timeout\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the non-reading peer was never closed:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("closed"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let mut good = Client::connect(&p.addr, Protocol::Compact, Duration::from_secs(1))
            .await
            .expect("connect");
        let (code, _, _) = call(&mut good, &Call::SendSync(Some(hb.clone()), 1000)).await;
        assert_eq!(code, 0, "another client is served meanwhile");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer.abort();
}

/// The tests that open ten thousand connections run one at a time (file descriptors, and RSS
/// figures that another storm would blur), and not beside the write-timeout test.
static MANY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens `n` connections to `p` (each running `then` once connected) and waits until the proxy
/// has accepted them all.
async fn open_many(p: &Proxy, n: usize, then: &[u8]) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(&p.addr).await.expect("connect");
        if !then.is_empty() {
            s.write_all(then).await.expect("write");
        }
        conns.push(s);
    }
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = p.http_get("/status").expect("status");
        let v: serde_json::Value = serde_json::from_str(&status).expect("json");
        if v["connections"].as_u64() >= Some(n as u64) {
            break;
        }
        assert!(std::time::Instant::now() < until, "not all accepted: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the proxy's tasks reach the state being measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    conns
}

/// The proxy's RSS once a request went through (allocator and runtime warmed up).
async fn warm_baseline(p: &Proxy) -> (Client, u64) {
    let mut c = p.client().await;
    let (code, _, _) = call(
        &mut c,
        &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000),
    )
    .await;
    assert_eq!(code, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    (c, p.rss_kib().expect("rss"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_at_most_4_kib() {
    let _many = MANY.lock().await;
    // Issue 20 part 4: buffers are held only while a frame is read or a reply written. Measured
    // on the debug build the tests run (release costs less): RSS growth over 10 000 idle
    // connections (proxy side: task, socket registration, no read buffer).
    let p = embedded();
    let (mut c, baseline) = warm_baseline(&p).await;
    let idle = open_many(&p, 10_000, b"").await;
    let held = p.rss_kib().expect("rss");
    let each = held.saturating_sub(baseline) as f64 / 10_000.0;
    println!("RSS {baseline} KiB, {held} KiB with 10 000 idle connections: {each:.2} KiB each");
    assert!(
        each <= 4.0,
        "an idle connection costs {each:.2} KiB (bound 4 KiB)"
    );
    drop(idle);
    let (code, _, _) = call(
        &mut c,
        &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000),
    )
    .await;
    assert_eq!(code, 0, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_a_storm_of_connections() {
    let _many = MANY.lock().await;
    // Issue 20: 10 000 connections, each in the middle of a 16 KiB frame (so each holds its read
    // buffers), then all closed: RSS must come back to within 50 MB of its baseline within 30 s
    // (glibc kept it: 180 MB above the baseline for good).
    let p = embedded();
    let (mut c, baseline) = warm_baseline(&p).await;
    let mut half_frame = (16 * 1024u32).to_be_bytes().to_vec();
    half_frame.extend([0x82, 0x21, 0x01]);
    let storm = open_many(&p, 10_000, &half_frame).await;
    let held = p.rss_kib().expect("rss");
    assert!(
        held > baseline + 50 * 1024,
        "the storm must cost more than the bound for this test to mean anything: {baseline} -> {held} KiB"
    );
    drop(storm);
    let closed_at = std::time::Instant::now();
    let bound = baseline + 50 * 1024;
    loop {
        let now = p.rss_kib().expect("rss");
        if now <= bound {
            println!(
                "RSS {baseline} KiB, {held} KiB during the storm, {now} KiB {:?} after it closed",
                closed_at.elapsed()
            );
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(30),
            "RSS still {now} KiB 30 s after the storm (baseline {baseline} KiB, {held} KiB during)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Still serving.
    let (code, _, _) = call(
        &mut c,
        &Call::SendSync(Some(msg("carrera_heartbeat", b"")), 1000),
    )
    .await;
    assert_eq!(code, 0);
}
