"""Wire tests of pproxy from an independent client (shared/spec/wire.md).

Two independent clients are used:
* the Apache Thrift Python library with stubs generated from idl/producerProxy.thrift
  (scripts/gen-thrift.sh), as the DDMQ Python/PHP/Go SDKs would talk;
* raw frames built by hand (rawthrift.py) for malformed or unusual traffic.
"""

import re
import socket
import struct
import time
import uuid
from contextlib import contextmanager

import pytest
from thrift.Thrift import TApplicationException
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.transport import TSocket, TTransport

from producerProxy import ProducerService
from producerProxy.ttypes import DelayMessage, Message

import rawthrift as rt
from conftest import DELAY_TOPIC, all_log_text

HEARTBEAT = "carrera_heartbeat"
TOPIC = "py_wire_test"          # auto-admitted in embedded mode (config.md §4.3)
SEND_TIMEOUT_MS = 10000

# wire.md §6, byte-exact
MSG = {
    0: "OK",
    10: "FAILED: unknown reason.",
    11: "FAILED: Message is too large or illegal or the length is 0",
    12: "FAILED: Send timeout",
    13: "FAILED: Topic is not in the proxy white list",
    14: "FAILED: Topic do not exist!",
    15: "FAILED: Refused by the rate limiter.",
    18: "FAILED: Topic is not delay",
    19: "FAILED: Topic is delay",
    20: "FAILED: Server is shutting down.",
    21: "FAILED: no producer for cluster.",
    30: "FAILED: Illegal uniqDelayMsgId.",
    31: "FAILED: Illegal dMsgType.",
    32: "FAILED: Illegal delay action.",
    33: "FAILED: Illegal delay timestamp.",
    34: "FAILED: Illegal delay innerTopicSeq.",
    35: "FAILED: Illegal delay loopTimes.",
    36: "FAILED: Illegal delay expire, expire must be greater than timestamp.",
    37: "FAILED: Illegal delay interval, interval can not be less than 3.",
    38: "FAILED: Illegal delay exponent base, base can not be less than 2.",
}

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# ---------------------------------------------------------------- helpers
@contextmanager
def client(addr, binary=False, timeout_ms=20000):
    sock = TSocket.TSocket(addr[0], addr[1])
    sock.setTimeout(timeout_ms)
    trans = TTransport.TFramedTransport(sock)
    if binary:
        proto = TBinaryProtocol.TBinaryProtocol(trans)
    else:
        proto = TCompactProtocol.TCompactProtocol(trans)
    c = ProducerService.Client(proto)
    trans.open()
    try:
        yield c
    finally:
        trans.close()


def assert_result(res, code):
    assert (res.code, res.msg) == (code, MSG[code])
    assert res.key is None, "Result.key must never be set by the server (wire.md §6)"


def send_sync(addr, msg, timeout=SEND_TIMEOUT_MS):
    with client(addr) as c:
        return c.sendSync(msg, timeout)


def msg(topic=TOPIC, **kw):
    if "body" not in kw and "value" not in kw:
        kw["body"] = b"hello pproxy"
    return Message(topic=topic, **kw)


def heartbeat_msg():
    return Message(topic=HEARTBEAT, key="hb", body=b"hb")


def raw_heartbeat_ok(sock, seqid=4242):
    """Send a compact heartbeat on an existing raw connection and check the reply."""
    mtype, name, seq, body = rt.call(sock, rt.c_heartbeat(seqid=seqid))
    assert (mtype, name, seq) == (rt.REPLY, b"sendSync", seqid)
    assert body == {0: {1: 0, 2: b"OK"}}


def delay_add(topic=DELAY_TOPIC, **kw):
    d = dict(topic=topic, body=b"delayed body", tags="t", action=1,
             timestamp=int(time.time()) + 3600, dmsgtype=2, times=0)
    d.update(kw)
    return DelayMessage(**d)


def send_delay(addr, dm, timeout=SEND_TIMEOUT_MS):
    with client(addr) as c:
        return c.sendDelaySync(dm, timeout)


def assert_delay(res, code, dmid):
    assert (res.code, res.msg, res.uniqDelayMsgId) == (code, MSG[code], dmid)


# ---------------------------------------------------------------- sendSync basics
def test_heartbeat_ok(proxy):
    assert_result(send_sync(proxy, heartbeat_msg()), 0)


def test_heartbeat_without_body_is_ok(proxy):
    # wire.md §5: no validation at all for the heartbeat topic
    assert_result(send_sync(proxy, Message(topic=HEARTBEAT)), 0)


def test_send_sync_body_ok(proxy):
    assert_result(send_sync(proxy, msg(key="k1", tags="tagA", body=b"\x00\x01binary\xff")), 0)


def test_send_sync_value_only_php_style(proxy):
    assert_result(send_sync(proxy, msg(value="php payload", key="k", hashId=7)), 0)


def test_send_sync_python_sdk_style(proxy):
    m = Message(topic=TOPIC, key="py-key", body=b"python sdk body", partitionId=-2,
                version="python-2.0.0")
    assert_result(send_sync(proxy, m, timeout=1000 * 5), 0)


def test_send_sync_go_style_empty_value_empty_properties(proxy):
    # wire.md §7 rows 7/8: Go sends value="" plus body and an empty properties map
    m = Message(topic=TOPIC, key="go", value="", body=b"go body", hashId=0, tags="",
                partitionId=-1, version="go-1.0", properties={})
    assert_result(send_sync(proxy, m), 0)


def test_send_sync_explicit_partition_and_non_reserved_properties(proxy):
    m = msg(partitionId=1, properties={"traceId": "t-1", "spanId": "s", "isPressureTraffic": "false",
                                        "carrera_headers": "h"})
    assert_result(send_sync(proxy, m), 0)


def test_send_sync_timeout_zero_uses_default(proxy):
    assert_result(send_sync(proxy, msg(), timeout=0), 0)


def test_topic_name_max_length_249_ok(proxy):
    assert_result(send_sync(proxy, msg(topic="t" * 249)), 0)


def test_many_calls_on_one_connection(proxy):
    with client(proxy) as c:
        for i in range(20):
            assert_result(c.sendSync(msg(key="k%d" % i) if i % 2 else heartbeat_msg(), SEND_TIMEOUT_MS), 0)


# ---------------------------------------------------------------- validation (forwarding.md §2) -> 11
@pytest.mark.parametrize("m", [
    pytest.param(Message(topic="", body=b"x"), id="empty-topic"),
    pytest.param(Message(body=b"x"), id="absent-topic"),
    pytest.param(Message(topic=TOPIC, key="k"), id="no-body-no-value"),
    pytest.param(Message(topic=TOPIC, value="", key="k"), id="empty-value"),
    pytest.param(Message(topic=TOPIC, value="v", body=b""), id="empty-body-wins-over-value"),
    pytest.param(Message(topic=TOPIC, key="k" * 256, body=b"x"), id="key-256"),
    pytest.param(Message(topic=TOPIC, key="\U0001F600" * 128, body=b"x"), id="key-256-utf16-units"),
    pytest.param(Message(topic=TOPIC, tags="t" * 256, body=b"x"), id="tags-256"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={"KEYS": "a"}), id="reserved-KEYS"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={"UNIQ_KEY": "a"}), id="reserved-UNIQ_KEY"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={"a": "   "}), id="blank-prop-value"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={"a": ""}), id="empty-prop-value"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={" \t": "v"}), id="blank-prop-key"),
    pytest.param(Message(topic=TOPIC, body=b"x", properties={"a": "x\x01y"}), id="prop-separator"),
    pytest.param(Message(topic="chronos_inner_x", body=b"x"), id="inner-prefix-topic"),
    pytest.param(Message(topic=TOPIC, body=b"x" * (2 * 1024 * 1024 + 1)), id="body-over-2MiB"),
])
def test_send_sync_invalid_is_11(proxy, m):
    assert_result(send_sync(proxy, m), 11)


def test_key_255_and_bmp_key_ok(proxy):
    assert_result(send_sync(proxy, msg(key="k" * 255)), 0)
    # 255 UTF-16 code units (510 UTF-8 bytes) is still within the limit
    assert_result(send_sync(proxy, msg(key="\u00e9" * 255)), 0)


def test_reserved_keys_are_case_sensitive(proxy):
    assert_result(send_sync(proxy, msg(properties={"keys": "v", "Tags": "v"})), 0)


@pytest.mark.parametrize("topic", ["bad topic!", "t" * 250, "caf\u00e9", "a/b"])
def test_unadmitted_topic_is_13(proxy, topic):
    assert_result(send_sync(proxy, msg(topic=topic)), 13)


def test_validation_before_admission(proxy):
    # forwarding.md §1: validation (11) precedes admission (13)
    assert_result(send_sync(proxy, Message(topic="bad topic!", key="k")), 11)


# ---------------------------------------------------------------- sendAsync / sendBatchSync
def test_send_async_ok(proxy):
    with client(proxy) as c:
        assert_result(c.sendAsync(msg(key="async")), 0)


def test_send_async_invalid_is_11(proxy):
    with client(proxy) as c:
        assert_result(c.sendAsync(Message(topic=TOPIC)), 11)


def test_send_async_heartbeat_topic_has_no_shortcut(proxy):
    # wire.md §5: only sendSync short-cuts carrera_heartbeat; it is not admitted (config.md §4.3)
    with client(proxy) as c:
        assert_result(c.sendAsync(heartbeat_msg()), 13)


def test_batch_empty_ok(proxy):
    with client(proxy) as c:
        assert_result(c.sendBatchSync([]), 0)


def test_batch_three_ok(proxy):
    batch = [msg(key="b%d" % i, body=b"batch %d" % i) for i in range(3)]
    batch[1] = msg(key="b1", value="value-only")
    with client(proxy) as c:
        assert_result(c.sendBatchSync(batch), 0)


def test_batch_with_one_invalid_is_11(proxy):
    batch = [msg(key="ok1"), Message(topic=TOPIC, key="no body"), msg(key="ok2")]
    with client(proxy) as c:
        assert_result(c.sendBatchSync(batch), 11)


def test_batch_first_failing_message_decides(proxy):
    # forwarding.md §5.2: lowest failing index decides (13 before 11 here)
    batch = [msg(), msg(topic="bad topic!"), Message(topic="", body=b"x")]
    with client(proxy) as c:
        assert_result(c.sendBatchSync(batch), 13)


def test_batch_heartbeat_has_no_shortcut(proxy):
    with client(proxy) as c:
        assert_result(c.sendBatchSync([heartbeat_msg()]), 13)


# ---------------------------------------------------------------- delay-topic gate (forwarding.md §1 step 5)
def test_send_sync_to_delay_topic_is_19(proxy):
    assert_result(send_sync(proxy, msg(topic=DELAY_TOPIC)), 19)


def test_send_async_and_batch_to_delay_topic_are_19(proxy):
    with client(proxy) as c:
        assert_result(c.sendAsync(msg(topic=DELAY_TOPIC)), 19)
        assert_result(c.sendBatchSync([msg(), msg(topic=DELAY_TOPIC)]), 19)


def test_send_sync_to_delay_topic_from_chronos_ok(proxy):
    assert_result(send_sync(proxy, msg(topic=DELAY_TOPIC, properties={"from_chronos": "1"})), 0)


# ---------------------------------------------------------------- sendDelaySync (delay.md §1-4)
def test_delay_action_3_is_32(proxy):
    assert_delay(send_delay(proxy, delay_add(action=3)), 32, "")


def test_delay_dmsgtype_0_is_31(proxy):
    assert_delay(send_delay(proxy, delay_add(dmsgtype=0)), 31, "")


def test_delay_dmsgtype_absent_is_31(proxy):
    assert_delay(send_delay(proxy, delay_add(dmsgtype=None)), 31, "")


def test_delay_timestamp_checked_before_dmsgtype(proxy):
    # delay.md §3 rows 12/13: timestamp (33) before dmsgtype (31)
    assert_delay(send_delay(proxy, delay_add(dmsgtype=0, timestamp=0)), 33, "")


def test_delay_to_non_delay_topic_is_18(proxy):
    assert_delay(send_delay(proxy, delay_add(topic=TOPIC)), 18, "")


def test_delay_to_unadmitted_topic_is_13(proxy):
    assert_delay(send_delay(proxy, delay_add(topic="bad topic!")), 13, "")


def test_delay_add_without_body_is_11(proxy):
    assert_delay(send_delay(proxy, delay_add(body=None)), 11, "")


def test_delay_cancel_garbage_is_30_with_id_echoed(proxy):
    dm = DelayMessage(topic=DELAY_TOPIC, uniqDelayMsgId="garbage", body=b"c", tags="", action=2)
    assert_delay(send_delay(proxy, dm), 30, "garbage")


def test_delay_cancel_blank_id_is_30(proxy):
    dm = DelayMessage(topic=DELAY_TOPIC, body=b"c", tags="", action=2)
    assert_delay(send_delay(proxy, dm), 30, "")


def test_delay_cancel_bad_type_is_31(proxy):
    dmid = "1507609164-5-1507781964-0-0-0-0-14f22520-ad72-11e7-91be-6ee54da579e3"
    dm = DelayMessage(topic=DELAY_TOPIC, uniqDelayMsgId=dmid, body=b"c", tags="", action=2)
    assert_delay(send_delay(proxy, dm), 31, dmid)


def test_delay_cancel_bad_seq_is_34(proxy):
    # embedded mode: innerTopicNum 1 (config.md §7), so seq 1 is out of range
    dmid = "1507609164-2-1507781964-0-0-0-1-14f22520-ad72-11e7-91be-6ee54da579e3"
    dm = DelayMessage(topic=DELAY_TOPIC, uniqDelayMsgId=dmid, body=b"c", tags="", action=2)
    assert_delay(send_delay(proxy, dm), 34, dmid)


def _now():
    return int(time.time())


@pytest.mark.parametrize("fields,code", [
    pytest.param(lambda t: dict(timestamp=999_999_999), 33, id="ts-below-1e9"),
    pytest.param(lambda t: dict(timestamp=t + 5356800 + 3600), 33, id="ts-beyond-62-days"),
    pytest.param(lambda t: dict(dmsgtype=5), 31, id="type-5"),
    pytest.param(lambda t: dict(dmsgtype=2, times=1), 35, id="oneshot-times-1"),
    pytest.param(lambda t: dict(dmsgtype=3, times=0, interval=10, expire=t + 7200), 35, id="loop-times-0"),
    pytest.param(lambda t: dict(dmsgtype=3, times=3, interval=10, expire=t), 36, id="loop-expire-eq-ts"),
    pytest.param(lambda t: dict(dmsgtype=4, times=3, interval=2, expire=t - 10), 36, id="loop-expire-lt-ts"),
    pytest.param(lambda t: dict(dmsgtype=3, times=3, interval=2, expire=t + 7200), 37, id="type3-interval-2"),
    pytest.param(lambda t: dict(dmsgtype=4, times=3, interval=1, expire=t + 7200), 38, id="type4-base-1"),
])
def test_delay_add_validation(proxy, fields, code):
    t = _now() + 3600
    kw = dict(timestamp=t)
    kw.update(fields(t))
    assert_delay(send_delay(proxy, delay_add(**kw)), code, "")


def test_delay_add_valid_and_idempotent(proxy):
    """A valid add answers 0 with the id of delay.md §4.1."""
    ts = _now() + 3600
    u = str(uuid.uuid4())
    res = send_delay(proxy, delay_add(timestamp=ts, uuid=u.upper()))
    assert res.code == 0, res
    assert res.msg == "OK"
    # type 2: expire = ts + 2 days, times 0, timed 0, interval 0, seq 0 (innerTopicNum 1), uuid lower-cased
    assert res.uniqDelayMsgId == "%d-2-%d-0-0-0-0-%s" % (ts, ts + 172800, u)
    # retry with the same uuid -> same id
    again = send_delay(proxy, delay_add(timestamp=ts, uuid=u))
    assert_delay(again, 0, res.uniqDelayMsgId)
    # cancel it: 0 and the id echoed
    cancel = DelayMessage(topic=DELAY_TOPIC, uniqDelayMsgId=res.uniqDelayMsgId, body=b"c", tags="", action=2)
    assert_delay(send_delay(proxy, cancel), 0, res.uniqDelayMsgId)


def test_delay_add_ms_timestamp_and_non_uuid(proxy):
    ts_ms = _now() * 1000 + 3_600_000
    res = send_delay(proxy, delay_add(timestamp=ts_ms, uuid="not-a-uuid"))
    assert res.code == 0, res
    u5 = uuid.uuid5(uuid.NAMESPACE_OID, "not-a-uuid")
    assert_delay(res, 0, "%d-2-%d-0-0-0-0-%s" % (ts_ms, ts_ms + 172_800_000, u5))


def test_delay_add_loop_without_uuid_gets_random_uuid(proxy):
    ts = _now() + 3600
    res = send_delay(proxy, delay_add(timestamp=ts, dmsgtype=3, times=5, interval=60, expire=ts + 600))
    assert res.code == 0, res
    assert res.msg == "OK"
    assert re.fullmatch(r"%d-3-%d-5-0-60-0-%s" % (ts, ts + 600, UUID_RE), res.uniqDelayMsgId), res


def test_delay_cancel_unknown_parseable_id_is_ok(proxy):
    dmid = "%d-2-%d-0-0-0-0-%s" % (_now() + 100, _now() + 100 + 172800, uuid.uuid4())
    dm = DelayMessage(topic=DELAY_TOPIC, uniqDelayMsgId=dmid, body=b"c", tags="", action=2)
    res = send_delay(proxy, dm)
    assert_delay(res, 0, dmid)


# ---------------------------------------------------------------- binary protocol (generated client)
def test_binary_protocol_client(proxy):
    with client(proxy, binary=True) as c:
        assert_result(c.sendSync(heartbeat_msg(), SEND_TIMEOUT_MS), 0)
        assert_result(c.sendSync(msg(key="bin"), SEND_TIMEOUT_MS), 0)
        assert_result(c.sendSync(msg(topic="bad topic!"), SEND_TIMEOUT_MS), 13)
        assert_delay(c.sendDelaySync(delay_add(action=3), SEND_TIMEOUT_MS), 32, "")


def test_generated_client_unknown_method_raises_and_connection_survives(proxy):
    with client(proxy) as c:
        # call a method that the IDL does not have, through the generated client's protocol
        c._oprot.writeMessageBegin("sendNotifySync", 1, 0)
        c._oprot.writeStructBegin("x")
        c._oprot.writeFieldStop()
        c._oprot.writeStructEnd()
        c._oprot.writeMessageEnd()
        c._oprot.trans.flush()
        name, mtype, seqid = c._iprot.readMessageBegin()
        assert (name, mtype) == ("sendNotifySync", 3)
        exc = TApplicationException()
        exc.read(c._iprot)
        c._iprot.readMessageEnd()
        assert exc.type == TApplicationException.UNKNOWN_METHOD
        assert exc.message == "Invalid method name: 'sendNotifySync'"
        assert_result(c.sendSync(heartbeat_msg(), SEND_TIMEOUT_MS), 0)


# ---------------------------------------------------------------- raw frames (wire.md §2-§4)
@pytest.mark.parametrize("seqid", [12345, 0, 1, 0x7FFFFFFF, -1, -2147483648])
def test_raw_seqid_and_name_echo(proxy, seqid):
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_heartbeat(seqid=seqid))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", seqid)
        # field 0 success = Result{1: 0, 2: "OK"}, no key (field 3)
        assert body == {0: {1: 0, 2: b"OK"}}


def test_raw_sequential_calls_seqid_zero_reused(proxy):
    # Python/PHP/C++ send seqid 0 on every call of a reused connection (wire.md §3.2)
    with rt.connect(proxy) as s:
        for _ in range(5):
            raw_heartbeat_ok(s, seqid=0)


def test_raw_unknown_method_then_heartbeat(proxy):
    with rt.connect(proxy) as s:
        args = rt.CStruct().struct(1, rt.c_message(topic=TOPIC, body=b"x")).end()
        mtype, name, seq, body = rt.call(s, rt.c_header("sendNotifySync", rt.CALL, 77) + args)
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendNotifySync", 77)
        assert body == {1: b"Invalid method name: 'sendNotifySync'", 2: 1}
        raw_heartbeat_ok(s)


def test_raw_unknown_method_async_variant(proxy):
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_header("sendNotifyAsync", rt.CALL, 0) + b"\x00")
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendNotifyAsync", 0)
        assert body == {1: b"Invalid method name: 'sendNotifyAsync'", 2: 1}
        raw_heartbeat_ok(s)


TRUNCATED_ARGS = {
    # field 1 struct, topic length 64 but only 3 bytes follow
    "truncated-string": b"\x1c" + b"\x18\x40abc",
    # field 1 struct, topic ok, then nothing (no STOPs)
    "missing-stops": b"\x1c" + b"\x18\x03abc",
    # field 1 struct containing a field of invalid compact type 13
    "invalid-type-id": b"\x1c" + b"\x1d\x01\x00\x00",
    # malformed varint: continuation bits never end
    "malformed-varint": b"\x1c" + b"\x18" + b"\xff" * 12,
}


@pytest.mark.parametrize("args", list(TRUNCATED_ARGS.values()), ids=list(TRUNCATED_ARGS))
def test_raw_undecodable_args_is_protocol_error(proxy, args):
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_header("sendSync", rt.CALL, 9) + args)
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendSync", 9)
        assert body.get(2) == 7, body
        assert isinstance(body.get(1), bytes) and body[1], "message should be a short description"
        raw_heartbeat_ok(s)


def test_raw_batch_list_longer_than_data_is_protocol_error(proxy):
    with rt.connect(proxy) as s:
        # field 1 list<struct> announcing 1000 elements, none present
        args = b"\x19" + b"\xfc" + rt.varint(1000)
        mtype, name, seq, body = rt.call(s, rt.c_header("sendBatchSync", rt.CALL, 3) + args)
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendBatchSync", 3)
        assert body.get(2) == 7, body
        raw_heartbeat_ok(s)


def test_raw_batch_wrong_element_type_is_protocol_error(proxy):
    with rt.connect(proxy) as s:
        # field 1 list of 2 i32 instead of Message structs
        args = b"\x19" + b"\x25" + rt.varint(rt.zz32(1)) + rt.varint(rt.zz32(2)) + b"\x00"
        mtype, name, seq, body = rt.call(s, rt.c_header("sendBatchSync", rt.CALL, 4) + args)
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendBatchSync", 4), body
        assert body.get(2) == 7, body
        raw_heartbeat_ok(s)


@pytest.mark.parametrize("length", [0, -1])
def test_raw_frame_length_not_positive_closes(proxy, length):
    with rt.connect(proxy) as s:
        raw_heartbeat_ok(s)  # the connection works before
        s.sendall(struct.pack(">i", length))
        assert rt.is_closed(s), "connection must be closed for frame length %d" % length


def test_raw_unframed_compact_closes(proxy):
    with rt.connect(proxy) as s:
        s.sendall(rt.c_heartbeat(seqid=1))   # no frame header: first byte 0x82
        assert rt.is_closed(s)
    # wire.md §2: logged as "unframed transport not supported"
    deadline = time.monotonic() + 5
    while "unframed transport not supported" not in all_log_text():
        assert time.monotonic() < deadline, "no 'unframed transport not supported' log line"
        time.sleep(0.1)


def test_raw_unsupported_protocol_byte_closes(proxy):
    with rt.connect(proxy) as s:
        # old non-strict binary: i32 name length first (first byte 0x00)
        payload = struct.pack(">i", 8) + b"sendSync" + b"\x01" + struct.pack(">i", 0) + b"\x00"
        s.sendall(rt.frame(payload))
        assert rt.is_closed(s)


def test_raw_undecodable_header_closes(proxy):
    with rt.connect(proxy) as s:
        s.sendall(rt.frame(b"\x82\x21"))   # compact header cut after the type byte
        assert rt.is_closed(s)


def test_raw_reply_type_message_is_invalid_message_type(proxy):
    with rt.connect(proxy) as s:
        req = rt.c_send_sync(rt.c_message(topic=HEARTBEAT, body=b"x"), seqid=5, mtype=rt.REPLY)
        mtype, name, seq, body = rt.call(s, req)
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendSync", 5)
        assert body.get(2) == 2, body
        raw_heartbeat_ok(s)


def _oversized(name, args_prefix, args_suffix, total):
    """Yield chunks of one frame of exactly `total` payload bytes whose args contain a huge binary."""
    header = rt.c_header(name, rt.CALL, 31337)
    fixed = len(header) + len(args_prefix) + len(args_suffix)
    n = total - fixed - 4            # 4-byte varint for lengths in [2^21, 2^28)
    ln = rt.varint(n)
    assert len(ln) == 4
    yield struct.pack(">i", total) + header + args_prefix + ln
    chunk = b"\xab" * 65536
    left = n
    while left:
        k = min(left, len(chunk))
        yield chunk[:k]
        left -= k
    yield args_suffix


OVERSIZE = 5_000_000 + 300_000


def _send_chunks(sock, chunks):
    for c in chunks:
        sock.sendall(c)


def test_raw_oversized_frame_send_sync_is_11(proxy):
    # Message{1: topic, 7: body <huge>} ; then STOP, field 2 timeout, STOP
    prefix = b"\x1c" + b"\x18" + rt.varint(len(TOPIC)) + TOPIC.encode() + b"\x68"
    suffix = b"\x00" + b"\x16" + rt.varint(rt.zz64(5000)) + b"\x00"
    with rt.connect(proxy, timeout=60) as s:
        _send_chunks(s, _oversized("sendSync", prefix, suffix, OVERSIZE))
        mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 31337)
        assert body == {0: {1: 11, 2: MSG[11].encode()}}
        raw_heartbeat_ok(s)


def test_raw_oversized_frame_send_delay_sync_is_11_with_empty_id(proxy):
    # DelayMessage{1: topic, 3: body <huge>}
    prefix = b"\x1c" + b"\x18" + rt.varint(len(DELAY_TOPIC)) + DELAY_TOPIC.encode() + b"\x28"
    suffix = b"\x00" + b"\x16" + rt.varint(rt.zz64(5000)) + b"\x00"
    with rt.connect(proxy, timeout=60) as s:
        _send_chunks(s, _oversized("sendDelaySync", prefix, suffix, OVERSIZE))
        mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
        assert (mtype, name, seq) == (rt.REPLY, b"sendDelaySync", 31337)
        assert body == {0: {1: 11, 2: MSG[11].encode(), 3: b""}}
        raw_heartbeat_ok(s)


def test_raw_oversized_frame_unknown_method(proxy):
    prefix = b"\x1c" + b"\x18"
    with rt.connect(proxy, timeout=60) as s:
        _send_chunks(s, _oversized("sendNotifySync", prefix, b"\x00\x00", OVERSIZE))
        mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
        assert (mtype, name, seq) == (rt.EXCEPTION, b"sendNotifySync", 31337)
        assert body == {1: b"Invalid method name: 'sendNotifySync'", 2: 1}
        raw_heartbeat_ok(s)


@pytest.mark.parametrize("kw", [
    dict(topic=b"py_\xff\xfe_topic", body=b"x"),
    dict(topic=TOPIC, key=b"\xc3\x28", body=b"x"),
    dict(topic=TOPIC, body=b"x", properties={b"k": b"\xed\xa0\x80"}),   # UTF-8 encoded surrogate
    dict(topic=TOPIC, body=b"x", properties={b"\x80": b"v"}),
], ids=["topic", "key", "prop-value-surrogate", "prop-key"])
def test_raw_invalid_utf8_is_11(proxy, kw):
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_send_sync(rt.c_message(**kw), seqid=8))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 8)
        assert body == {0: {1: 11, 2: MSG[11].encode()}}
        raw_heartbeat_ok(s)


@pytest.mark.parametrize("kw", [
    dict(topic=TOPIC, body=b"\xff\xfe\x00 not utf-8"),
    dict(topic=TOPIC, value=b"\xff\xfe\x00 not utf-8"),
], ids=["body", "value"])
def test_raw_non_utf8_payload_is_accepted(proxy, kw):
    # wire.md §3.4: value and body are raw bytes, never UTF-8 checked
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_send_sync(rt.c_message(**kw), seqid=8))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 8)
        assert body == {0: {1: 0, 2: b"OK"}}


def test_raw_unknown_fields_are_skipped(proxy):
    m = rt.c_message(topic=TOPIC, body=b"x", properties={},
                     extra=[lambda s: s.binary(20, "unknown"), lambda s: s.i64(99, 1)])
    # unknown field in the args struct as well
    args = rt.CStruct().struct(1, m).i64(2, 5000).binary(7, "junk").end()
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_header("sendSync", rt.CALL, 1) + args)
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 1)
        assert body == {0: {1: 0, 2: b"OK"}}


def test_raw_known_field_with_wrong_type_is_absent(proxy):
    # topic (field 1) sent as i32: skipped, so the topic is absent -> 11 (wire.md §3.4)
    m = rt.CStruct().i32(1, 5).binary(7, b"x").end()
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_send_sync(m, seqid=2))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 2)
        assert body == {0: {1: 11, 2: MSG[11].encode()}}
        raw_heartbeat_ok(s)


def test_raw_repeated_field_last_wins(proxy):
    # topic first invalid, then valid: last wins -> OK
    m = rt.CStruct().binary(1, "bad topic!").binary(7, b"x").binary(1, TOPIC).end()
    with rt.connect(proxy) as s:
        mtype, name, seq, body = rt.call(s, rt.c_send_sync(m, seqid=2))
        assert body == {0: {1: 0, 2: b"OK"}}


def test_raw_binary_strict_heartbeat(proxy):
    with rt.connect(proxy) as s:
        s.sendall(rt.frame(rt.b_heartbeat(seqid=99)))
        payload = rt.recv_frame(s)
        assert payload[:4] == b"\x80\x01\x00\x02", payload[:4]
        mtype, name, seq, body = rt.b_parse_reply(payload)
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 99)
        assert body == {0: {1: 0, 2: b"OK"}}
        # protocol is detected per frame: a compact frame next on the same connection
        raw_heartbeat_ok(s)


def test_raw_oneway_gets_no_reply(proxy):
    with rt.connect(proxy) as s:
        s.sendall(rt.frame(rt.c_heartbeat(seqid=7, mtype=rt.ONEWAY)))
        s.sendall(rt.frame(rt.c_heartbeat(seqid=8, mtype=rt.CALL)))
        mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
        assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 8), "first reply must answer the CALL"
        assert body == {0: {1: 0, 2: b"OK"}}
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(1)


def test_raw_pipelined_requests_answered_in_order(proxy):
    with rt.connect(proxy) as s:
        reqs = b"".join(rt.frame(rt.c_heartbeat(seqid=i)) for i in range(1, 11))
        s.sendall(reqs)
        for i in range(1, 11):
            mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
            assert (mtype, seq) == (rt.REPLY, i)


def test_raw_connect_close_without_bytes_is_harmless(proxy):
    for _ in range(20):
        rt.connect(proxy).close()
    with rt.connect(proxy) as s:
        raw_heartbeat_ok(s)


def test_raw_200_concurrent_connections(proxy):
    n = 200
    socks = []
    try:
        for _ in range(n):
            socks.append(rt.connect(proxy, timeout=30))
        for i, s in enumerate(socks):
            s.sendall(rt.frame(rt.c_heartbeat(seqid=1000 + i)))
        for i, s in enumerate(socks):
            mtype, name, seq, body = rt.c_parse_reply(rt.recv_frame(s))
            assert (mtype, name, seq) == (rt.REPLY, b"sendSync", 1000 + i)
            assert body == {0: {1: 0, 2: b"OK"}}
    finally:
        for s in socks:
            s.close()
