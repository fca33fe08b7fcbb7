#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ (run by scripts/fuzz.sh).

Thrift seeds are built with tests/python/rawthrift.py, the tests' hand-written codec, which is
independent of the Rust encoder under test; config seeds are the shipped conf/ files.
"""

import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import rawthrift as rt  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))

# binary protocol type ids
B_BOOL, B_BYTE, B_DOUBLE, B_I16, B_I32, B_I64, B_STRING, B_STRUCT, B_MAP, B_SET, B_LIST = (
    2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15)


def b_str(fid, s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack(">bhi", B_STRING, fid, len(s)) + s


def b_message(topic, body, props=None, key=None):
    out = b_str(1, topic)
    if key is not None:
        out += b_str(2, key)
    out += struct.pack(">bhq", B_I64, 4, 0) + struct.pack(">bhi", B_I32, 6, -1) + b_str(7, body)
    if props:
        out += struct.pack(">bhbbi", B_MAP, 9, B_STRING, B_STRING, len(props))
        for k, v in props.items():
            out += struct.pack(">i", len(k)) + k.encode() + struct.pack(">i", len(v)) + v.encode()
    return out + b"\x00"


def b_delay(topic, action, ts, dtype, interval=0, expire=0, times=0, uid=None, delay_id=None):
    out = b_str(1, topic)
    if delay_id is not None:
        out += b_str(2, delay_id)
    out += b_str(3, b"payload")
    out += struct.pack(">bhi", B_I32, 5, action) + struct.pack(">bhq", B_I64, 6, ts)
    out += struct.pack(">bhi", B_I32, 7, dtype)
    for fid, v in ((8, interval), (9, expire), (10, times)):
        out += struct.pack(">bhq", B_I64, fid, v)
    if uid is not None:
        out += b_str(11, uid)
    return out + b"\x00"


def c_delay(topic, action, ts, dtype, interval=0, expire=0, times=0, uid=None, delay_id=None):
    s = rt.CStruct().binary(1, topic)
    if delay_id is not None:
        s.binary(2, delay_id)
    s.binary(3, b"payload").i32(5, action).i64(6, ts).i32(7, dtype)
    s.i64(8, interval).i64(9, expire).i64(10, times)
    if uid is not None:
        s.binary(11, uid)
    s.strmap(14, {"k": "v"})
    return s.end()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def thrift():
    msg = rt.c_message(topic="orders", key="k-1", body=b"\x00\xffbody", properties={"traceId": "t1"},
                       partition_id=-1)
    big = rt.c_message(topic="t", body=b"x" * 40)
    did = "1507609164-3-1507781964-5-2-10-0-14f22520-ad72-11e7-91be-6ee54da579e3"
    compact = {
        "c_sendsync": rt.c_send_sync(msg, seqid=1),
        "c_heartbeat_oneway": rt.c_heartbeat(seqid=2, mtype=rt.ONEWAY),
        "c_sendasync": rt.c_header("sendAsync", rt.CALL, 3) + rt.CStruct().struct(1, msg).end(),
        "c_batch": rt.c_header("sendBatchSync", rt.CALL, 4)
        + rt.CStruct().structlist(1, [msg, big, rt.c_message(topic="t")]).end(),
        "c_batch16": rt.c_header("sendBatchSync", rt.CALL, 5)
        + rt.CStruct().structlist(1, [rt.c_message(topic="t")] * 16).end(),
        "c_delay_add": rt.c_header("sendDelaySync", rt.CALL, 6)
        + rt.CStruct().struct(1, c_delay("d", 1, 1_700_000_000_000, 3, 5, 1_800_000_000_000, 9, "u"))
        .i64(2, 100).end(),
        "c_delay_cancel": rt.c_header("sendDelaySync", rt.CALL, 7)
        + rt.CStruct().struct(1, c_delay("d", 2, 0, 0, delay_id=did)).end(),
        "c_unknown_method": rt.c_header("nope", rt.CALL, 8) + b"\x00",
    }
    binary = {
        "b_heartbeat": rt.b_heartbeat(seqid=9),
        "b_sendsync": rt.b_header("sendSync", rt.CALL, 10)
        + struct.pack(">bh", B_STRUCT, 1) + b_message("orders", b"body", {"a": "b"}, key="k")
        + struct.pack(">bhq", B_I64, 2, 50) + b"\x00",
        "b_batch": rt.b_header("sendBatchSync", rt.CALL, 11)
        + struct.pack(">bhbi", B_LIST, 1, B_STRUCT, 2) + b_message("a", b"1") + b_message("b", b"2")
        + b"\x00",
        "b_delay_add": rt.b_header("sendDelaySync", rt.CALL, 12)
        + struct.pack(">bh", B_STRUCT, 1) + b_delay("d", 1, 1_700_000_000, 4, 2, 1_800_000_000, 3, "u")
        + struct.pack(">bhq", B_I64, 2, 100) + b"\x00",
        "b_exception_type": rt.b_header("sendSync", rt.EXCEPTION, 13) + b"\x00",
    }
    for name, payload in {**compact, **binary}.items():
        write("thrift_frame", name, rt.frame(payload))
    # Two frames back to back, and an oversized one (> the target's 1 KiB limit).
    write("thrift_frame", "pipelined", rt.frame(compact["c_sendsync"]) + rt.frame(binary["b_batch"]))
    write("thrift_frame", "oversized", rt.frame(rt.c_send_sync(rt.c_message(topic="t", body=b"y" * 1500))))
    # thrift_call: selector byte (bit 0 protocol, bits 1-2 method) + the argument struct.
    sel = {b"sendSync": 0, b"sendAsync": 1, b"sendBatchSync": 2, b"sendDelaySync": 3}
    for name, payload in {**compact, **binary}.items():
        method, args = split_header(payload)
        if method in sel:
            proto = 1 if payload[0] == 0x80 else 0
            write("thrift_call", name, bytes([proto | (sel[method] << 1)]) + args)


def read_varint(b, i):
    n, shift = 0, 0
    while True:
        n |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return n, i


def split_header(p):
    """(method name, argument bytes) of a request payload."""
    if p[0] == 0x82:
        _, i = read_varint(p, 2)
        n, i = read_varint(p, i)
        return p[i:i + n], p[i + n:]
    (n,) = struct.unpack(">i", p[4:8])
    return p[8:8 + n], p[8 + n + 4:]


def delay_ids():
    ids = [
        "1507609164-2-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3",
        "1507609164000-3-15077819640000-5-2-10-0-14F22520-AD72-11E7-91BE-6EE54DA579E3",
        "1700000000-4-1800000000-9-3-2-1-00000000-0000-0000-0000-000000000000",
        "1700000000-3-1800000000-9-0-5-7-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        # exponential, interval 1, occurrence ~10^12: made canonical_of spin (RELIABILITY.md)
        "1700000000-4-1800000000-999999999999-999999999998-1-0-14f22520-ad72-11e7-91be-6ee54da579e3",
        "14f22520-ad72-11e7-91be-6ee54da579e3",
        "order-17",
    ]
    for i, s in enumerate(ids):
        write("delay_id", "id%d" % i, s.encode())


def configs():
    conf = os.path.join(ROOT, "conf")
    with open(os.path.join(conf, "local-config.json"), "rb") as f:
        write("proxy_config", "local-config.json", f.read())
    write("proxy_config", "topic.json",
          b'{"topic":"t","delayTopic":"true","topicUnits":[{"brokerCluster":"a",'
          b'"proxies":{"p":["127.0.0.1:9613"]},"maxTps":"10"}],"limiterFailureRetryInterval":5}')
    write("proxy_config", "topics.json", b'{"topics":[{"topic":"a"},{"topic":"b","autoBatch":true}]}')
    for name in sorted(os.listdir(conf)):
        if name.endswith(".yaml"):
            with open(os.path.join(conf, name), "rb") as f:
                write("settings_yaml", name, f.read())


if __name__ == "__main__":
    thrift()
    delay_ids()
    configs()
