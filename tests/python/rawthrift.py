"""Minimal hand-written Thrift framing + compact/binary codec for raw-socket tests.

Deliberately independent of both the generated code and the `thrift` library,
so that frames can be malformed on purpose and replies are checked byte by byte.
"""

import socket
import struct

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4

# ---------------------------------------------------------------- compact
# compact type ids
C_TRUE, C_FALSE, C_BYTE, C_I16, C_I32, C_I64, C_DOUBLE, C_BINARY, C_LIST, C_SET, C_MAP, C_STRUCT = range(1, 13)


def varint(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zz32(n):
    return ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF


def zz64(n):
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


def c_header(name, mtype=CALL, seqid=0):
    if isinstance(name, str):
        name = name.encode()
    return bytes([0x82, (mtype << 5) | 0x01]) + varint(seqid & 0xFFFFFFFF) + varint(len(name)) + name


class CStruct:
    """Builder for a compact-protocol struct body (fields then STOP)."""

    def __init__(self):
        self.buf = bytearray()
        self.last = 0

    def _fh(self, fid, ctype):
        delta = fid - self.last
        if 0 < delta <= 15:
            self.buf.append((delta << 4) | ctype)
        else:
            self.buf.append(ctype)
            self.buf += varint(zz32(fid) & 0xFFFF)
        self.last = fid
        return self

    def binary(self, fid, data):
        if isinstance(data, str):
            data = data.encode()
        self._fh(fid, C_BINARY)
        self.buf += varint(len(data)) + data
        return self

    def i32(self, fid, v):
        self._fh(fid, C_I32)
        self.buf += varint(zz32(v))
        return self

    def i64(self, fid, v):
        self._fh(fid, C_I64)
        self.buf += varint(zz64(v))
        return self

    def struct(self, fid, body):
        self._fh(fid, C_STRUCT)
        self.buf += body
        return self

    def strmap(self, fid, d):
        self._fh(fid, C_MAP)
        if not d:
            self.buf.append(0)
        else:
            self.buf += varint(len(d)) + bytes([(C_BINARY << 4) | C_BINARY])
            for k, v in d.items():
                k = k.encode() if isinstance(k, str) else k
                v = v.encode() if isinstance(v, str) else v
                self.buf += varint(len(k)) + k + varint(len(v)) + v
        return self

    def structlist(self, fid, bodies):
        self._fh(fid, C_LIST)
        n = len(bodies)
        if n < 15:
            self.buf.append((n << 4) | C_STRUCT)
        else:
            self.buf += bytes([0xF0 | C_STRUCT]) + varint(n)
        for b in bodies:
            self.buf += b
        return self

    def end(self):
        return bytes(self.buf) + b"\x00"


def c_message(topic=None, key=None, value=None, body=None, properties=None, partition_id=None,
              extra=None):
    """Compact-encoded Message struct. `extra` = list of callables(CStruct) run before STOP
    (for unknown fields); fields must stay in increasing id order for short headers."""
    s = CStruct()
    if topic is not None:
        s.binary(1, topic)
    if key is not None:
        s.binary(2, key)
    if value is not None:
        s.binary(3, value)
    if partition_id is not None:
        s.i32(6, partition_id)
    if body is not None:
        s.binary(7, body)
    if properties is not None:
        s.strmap(9, properties)
    for f in extra or ():
        f(s)
    return s.end()


def c_send_sync(message_struct, timeout=5000, seqid=0, mtype=CALL, name="sendSync"):
    args = CStruct().struct(1, message_struct).i64(2, timeout).end()
    return c_header(name, mtype, seqid) + args


def c_heartbeat(seqid=0, mtype=CALL):
    return c_send_sync(c_message(topic="carrera_heartbeat", body=b"hb"), seqid=seqid, mtype=mtype)


class CReader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def byte(self):
        b = self.d[self.p]
        self.p += 1
        return b

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated reply")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def varint(self):
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def zz(self):
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def header(self):
        proto = self.byte()
        if proto != 0x82:
            raise ValueError("not a compact reply: first byte 0x%02x" % proto)
        tv = self.byte()
        if tv & 0x1F != 0x01:
            raise ValueError("bad compact version byte 0x%02x" % tv)
        seq = self.varint()
        if seq >= 1 << 31:
            seq -= 1 << 32
        name = self.take(self.varint())
        return tv >> 5, name, seq

    def value(self, ctype):
        if ctype == C_TRUE:
            return True
        if ctype == C_FALSE:
            return False
        if ctype == C_BYTE:
            return self.byte()
        if ctype in (C_I16, C_I32, C_I64):
            return self.zz()
        if ctype == C_DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if ctype == C_BINARY:
            return bytes(self.take(self.varint()))
        if ctype == C_STRUCT:
            return self.struct()
        if ctype in (C_LIST, C_SET):
            h = self.byte()
            n = h >> 4
            if n == 15:
                n = self.varint()
            return [self.value(h & 0x0F) for _ in range(n)]
        if ctype == C_MAP:
            n = self.varint()
            if n == 0:
                return {}
            kv = self.byte()
            return {self.value(kv >> 4): self.value(kv & 0x0F) for _ in range(n)}
        raise ValueError("unknown compact type %d" % ctype)

    def struct(self):
        """Returns {field id: value} (nested structs as dicts)."""
        out = {}
        last = 0
        while True:
            h = self.byte()
            if h == 0:
                return out
            ctype = h & 0x0F
            delta = h >> 4
            fid = last + delta if delta else self.zz()
            last = fid
            out[fid] = self.value(ctype)


def c_parse_reply(payload):
    """(message type, name bytes, seqid, body struct as dict) of a compact reply."""
    r = CReader(payload)
    mtype, name, seq = r.header()
    body = r.struct()
    if r.p != len(payload):
        raise ValueError("%d trailing bytes after reply struct" % (len(payload) - r.p))
    return mtype, name, seq, body


# ---------------------------------------------------------------- binary (strict)
B_STOP, B_BOOL, B_BYTE, B_DOUBLE, B_I16, B_I32, B_I64, B_STRING, B_STRUCT, B_MAP, B_SET, B_LIST = (
    0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15)


def b_header(name, mtype=CALL, seqid=0):
    name = name.encode() if isinstance(name, str) else name
    return struct.pack(">I", 0x80010000 | mtype) + struct.pack(">i", len(name)) + name + struct.pack(
        ">i", seqid)


def b_field_str(fid, s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack(">bh", B_STRING, fid) + struct.pack(">i", len(s)) + s


def b_heartbeat(seqid=0):
    msg = b_field_str(1, "carrera_heartbeat") + b_field_str(7, b"hb") + b"\x00"
    args = struct.pack(">bh", B_STRUCT, 1) + msg + struct.pack(">bhq", B_I64, 2, 5000) + b"\x00"
    return b_header("sendSync", CALL, seqid) + args


class BReader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated reply")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def header(self):
        v = self.unpack(">I")
        if v & 0xFFFF0000 != 0x80010000:
            raise ValueError("not a strict binary reply: 0x%08x" % v)
        name = self.take(self.unpack(">i"))
        seq = self.unpack(">i")
        return v & 0xFF, name, seq

    def value(self, t):
        if t == B_BOOL:
            return self.unpack(">b") != 0
        if t == B_BYTE:
            return self.unpack(">b")
        if t == B_DOUBLE:
            return self.unpack(">d")
        if t == B_I16:
            return self.unpack(">h")
        if t == B_I32:
            return self.unpack(">i")
        if t == B_I64:
            return self.unpack(">q")
        if t == B_STRING:
            return bytes(self.take(self.unpack(">i")))
        if t == B_STRUCT:
            return self.struct()
        if t in (B_LIST, B_SET):
            et = self.unpack(">b")
            return [self.value(et) for _ in range(self.unpack(">i"))]
        if t == B_MAP:
            kt, vt = self.unpack(">b"), self.unpack(">b")
            return {self.value(kt): self.value(vt) for _ in range(self.unpack(">i"))}
        raise ValueError("unknown binary type %d" % t)

    def struct(self):
        out = {}
        while True:
            t = self.unpack(">b")
            if t == B_STOP:
                return out
            fid = self.unpack(">h")
            out[fid] = self.value(t)


def b_parse_reply(payload):
    r = BReader(payload)
    mtype, name, seq = r.header()
    body = r.struct()
    if r.p != len(payload):
        raise ValueError("%d trailing bytes after reply struct" % (len(payload) - r.p))
    return mtype, name, seq, body


# ---------------------------------------------------------------- framing / sockets
def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def connect(addr, timeout=15.0):
    s = socket.create_connection(addr, timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    if n <= 0 or n > 16_384_000:
        raise ValueError("bad reply frame length %d" % n)
    return recv_exact(sock, n)


def call(sock, payload):
    """Send one framed request, return the parsed compact reply."""
    sock.sendall(frame(payload))
    return c_parse_reply(recv_frame(sock))


def is_closed(sock, wait=5.0):
    """True if the peer closes (EOF or reset) within `wait` seconds without sending data."""
    sock.settimeout(wait)
    try:
        data = sock.recv(1)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return data == b""
