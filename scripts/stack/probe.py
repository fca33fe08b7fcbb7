#!/usr/bin/env python3
"""Wire-level health probes for scripts/stack.sh (standard library only).

Each probe speaks the server's own protocol over one short TCP connection, so
`stack.sh up` can poll every half second without paying for a JVM start per
attempt, and a probe that passes means the server really answers requests
(not just that a port is open).

  probe.py kafka-ready      HOST:PORT                 broker is in the cluster metadata
  probe.py kafka-partitions HOST:PORT TOPIC           "<partitions> <partitions with a leader>", "-1 0" if absent
  probe.py rocketmq-namesrv NAMESRV                  name server answers a cluster-info request
  probe.py rocketmq-ready   NAMESRV BROKER_NAME ADDR  broker registered on the name server and answering
  probe.py rocketmq-register BROKER_ADDR              make the broker register with the name server now
  probe.py rocketmq-route   NAMESRV TOPIC             "<write queues> <read queues>", "-1 -1" if no route
  probe.py rocketmq-stale-route NAMESRV CLUSTER BROKER_NAME ADDR TOPIC QUEUES SECONDS
                                                     register a broker that is not there (a route
                                                     the name server keeps after a broker vanished),
                                                     held SECONDS or until killed
  probe.py zk-srvr          HOST:PORT                 ZooKeeper `srvr` output (exit 0 only if standalone)

Exit status: 0 healthy / answered, 1 not (yet), with a reason on stderr.
"""

import json
import re
import socket
import struct
import sys

TIMEOUT = 3.0


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return bytes(buf)


# --------------------------------------------------------------------- Kafka
# Only non-flexible (pre-KIP-482) request versions are encoded here; the
# versions actually sent are negotiated with ApiVersions v0, which every
# broker must keep accepting.

API_METADATA = 3
API_VERSIONS = 18
ERR_UNKNOWN_TOPIC = 3


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        (val,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return val

    def i8(self):
        return self.take(">b")

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item):
        n = self.i32()
        return [item() for _ in range(max(n, 0))]


def kafka_call(sock, api_key, version, body, corr):
    client_id = b"pproxy-stack-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    resp = recv_exact(sock, size)
    if struct.unpack_from(">i", resp)[0] != corr:
        raise ConnectionError("correlation id mismatch")
    return Reader(resp[4:])


def kafka_metadata(addr, topics):
    """Return (brokers, topics) as seen by the broker; topics=None asks for none."""
    with socket.create_connection(split_addr(addr), timeout=TIMEOUT) as sock:
        r = kafka_call(sock, API_VERSIONS, 0, b"", 1)
        err = r.i16()
        if err:
            raise RuntimeError(f"ApiVersions error {err}")
        ranges = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            ranges[key] = (lo, hi)
        lo, hi = ranges.get(API_METADATA, (0, -1))
        usable = [v for v in range(1, 9) if lo <= v <= hi]
        if not usable:
            raise RuntimeError(f"no Metadata version in 1..8 (broker: {lo}..{hi})")
        ver = max(usable)
        names = topics or []
        body = struct.pack(">i", len(names))
        for t in names:
            b = t.encode()
            body += struct.pack(">h", len(b)) + b
        if ver >= 4:
            body += b"\x00"  # allow_auto_topic_creation = false
        if ver >= 8:
            body += b"\x00\x00"  # no authorized-operations lists
        r = kafka_call(sock, API_METADATA, ver, body, 2)
        if ver >= 3:
            r.i32()  # throttle_time_ms

        def broker():
            node, host, port = r.i32(), r.string(), r.i32()
            r.string()  # rack
            return node, host, port

        brokers = r.array(broker)
        if ver >= 2:
            r.string()  # cluster_id
        r.i32()  # controller_id

        def partition():
            err, _idx, leader = r.i16(), r.i32(), r.i32()
            if ver >= 7:
                r.i32()  # leader_epoch
            r.array(r.i32)  # replicas
            r.array(r.i32)  # isr
            if ver >= 5:
                r.array(r.i32)  # offline replicas
            return err, leader

        def topic():
            err, name = r.i16(), r.string()
            r.i8()  # is_internal
            parts = r.array(partition)
            if ver >= 8:
                r.i32()  # topic_authorized_operations
            return name, err, parts

        return brokers, r.array(topic)


def cmd_kafka_ready(addr):
    brokers, _ = kafka_metadata(addr, None)
    if not brokers:
        print("no broker registered yet", file=sys.stderr)
        return 1
    print(" ".join(f"broker {n} at {h}:{p}" for n, h, p in brokers))
    return 0


def cmd_kafka_partitions(addr, name):
    _, topics = kafka_metadata(addr, [name])
    for tname, err, parts in topics:
        if tname != name:
            continue
        if err == ERR_UNKNOWN_TOPIC:
            print("-1 0")
            return 0
        led = sum(1 for perr, leader in parts if perr == 0 and leader >= 0)
        print(f"{len(parts)} {led}")
        return 0
    print("-1 0")
    return 0


# ------------------------------------------------------------------ RocketMQ
# Remoting frame: int32 length, int32 (serialize type << 24 | header length),
# JSON header, body. Bodies are fastjson, which may write non-string map keys
# ({0:"addr"}), so they are searched with regexes rather than parsed.

RMQ_UPDATE_BROKER_CONFIG = 25
RMQ_REGISTER_BROKER = 103
# MQVersion.Version.V5_3_3.ordinal(): a register request of an older version is read the old way.
RMQ_VERSION_5_3_3 = 479
RMQ_GET_BROKER_RUNTIME_INFO = 28
RMQ_GET_ROUTEINFO_BY_TOPIC = 105
RMQ_GET_BROKER_CLUSTER_INFO = 106


def rmq_exchange(sock, code, ext=None, body=b"", version=0):
    header = {"code": code, "flag": 0, "language": "JAVA", "opaque": 1,
              "serializeTypeCurrentRPC": "JSON", "version": version}
    if ext:
        header["extFields"] = ext
    hb = json.dumps(header).encode()
    frame = struct.pack(">ii", 4 + len(hb) + len(body), len(hb)) + hb + body
    sock.sendall(frame)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    data = recv_exact(sock, size)
    hlen = struct.unpack_from(">i", data)[0] & 0xFFFFFF
    resp = json.loads(data[4:4 + hlen])
    return resp.get("code"), resp.get("remark"), data[4 + hlen:].decode("utf-8", "replace")


def rmq_call(addr, code, ext=None, body=b""):
    with socket.create_connection(split_addr(addr), timeout=TIMEOUT) as sock:
        return rmq_exchange(sock, code, ext, body)


def cmd_rocketmq_ready(namesrv, broker_name, broker_addr):
    code, remark, body = rmq_call(namesrv, RMQ_GET_BROKER_CLUSTER_INFO)
    if code != 0:
        print(f"name server: code {code} {remark}", file=sys.stderr)
        return 1
    if f'"{broker_name}"' not in body or broker_addr not in body:
        print(f"{broker_name} ({broker_addr}) not registered on the name server yet",
              file=sys.stderr)
        return 1
    code, remark, _ = rmq_call(broker_addr, RMQ_GET_BROKER_RUNTIME_INFO)
    if code != 0:
        print(f"broker: code {code} {remark}", file=sys.stderr)
        return 1
    print(f"{broker_name} at {broker_addr} registered on {namesrv}")
    return 0


def cmd_rocketmq_namesrv(namesrv):
    code, remark, _ = rmq_call(namesrv, RMQ_GET_BROKER_CLUSTER_INFO)
    if code != 0:
        print(f"name server: code {code} {remark}", file=sys.stderr)
        return 1
    print(f"name server {namesrv} answering")
    return 0


def cmd_rocketmq_register(broker_addr):
    """Make the broker register with the name server now.

    A 5.3 broker registers at start only if its client has already found the
    name server reachable, which races with its own start-up; otherwise the
    first registration comes 10 s later. Setting brokerPermission (to its
    default, read+write) makes it re-register at once.
    """
    code, remark, _ = rmq_call(broker_addr, RMQ_UPDATE_BROKER_CONFIG,
                               body=b"brokerPermission=6\n")
    if code != 0:
        print(f"broker: code {code} {remark}", file=sys.stderr)
        return 1
    print(f"{broker_addr} asked to register")
    return 0


def cmd_rocketmq_route(namesrv, topic):
    code, remark, body = rmq_call(namesrv, RMQ_GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    if code != 0:
        print("-1 -1")
        print(f"code {code} {remark}", file=sys.stderr)
        return 0
    w = sum(int(x) for x in re.findall(r'"writeQueueNums":(\d+)', body))
    rd = sum(int(x) for x in re.findall(r'"readQueueNums":(\d+)', body))
    print(f"{w} {rd}")
    return 0


def cmd_rocketmq_stale_route(namesrv, cluster, broker_name, broker_addr, topic, queues, seconds):
    """Registers BROKER_NAME at ADDR with TOPIC on the name server while no broker is there.

    The name server keeps a registration until its connection closes or 120 s pass without a
    heartbeat: this is the route it serves after a broker vanished without unregistering (a
    host crash, a partition, a broker stuck in shutdown). The connection is held open for
    SECONDS; a real broker registering the same name and address meanwhile takes the
    registration over, and closing this connection then leaves it alone.
    """
    import time
    q = int(queues)
    # Two topics: a new broker registering a single topic is refused ("has not registered").
    table = {t: {"topicName": t, "readQueueNums": q, "writeQueueNums": q, "perm": 6,
                 "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False,
                 "attributes": {}}
             for t in (topic, topic + "-stale-route")}
    body = json.dumps({"topicConfigSerializeWrapper": {
        "topicConfigTable": table,
        "dataVersion": {"counter": 1, "stateVersion": 0,
                        "timestamp": int(time.time() * 1000)}},
        "filterServerList": []}).encode()
    ext = {"brokerName": broker_name, "brokerAddr": broker_addr, "clusterName": cluster,
           "haServerAddr": broker_addr, "brokerId": "0", "compressed": "false",
           "bodyCrc32": "0"}
    with socket.create_connection(split_addr(namesrv), timeout=TIMEOUT) as sock:
        code, remark, _ = rmq_exchange(sock, RMQ_REGISTER_BROKER, ext, body, RMQ_VERSION_5_3_3)
        if code != 0:
            print(f"name server: code {code} {remark}", file=sys.stderr)
            return 1
        print(f"{broker_name} at {broker_addr} registered on {namesrv} with {topic}", flush=True)
        time.sleep(float(seconds))
    return 0


# ----------------------------------------------------------------- ZooKeeper

def cmd_zk_srvr(addr):
    with socket.create_connection(split_addr(addr), timeout=TIMEOUT) as sock:
        sock.sendall(b"srvr")
        out = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            out += chunk
    text = out.decode("utf-8", "replace")
    print(text, end="")
    return 0 if "Mode: standalone" in text else 1


COMMANDS = {
    "kafka-ready": (cmd_kafka_ready, 1),
    "kafka-partitions": (cmd_kafka_partitions, 2),
    "rocketmq-namesrv": (cmd_rocketmq_namesrv, 1),
    "rocketmq-ready": (cmd_rocketmq_ready, 3),
    "rocketmq-register": (cmd_rocketmq_register, 1),
    "rocketmq-route": (cmd_rocketmq_route, 2),
    "rocketmq-stale-route": (cmd_rocketmq_stale_route, 7),
    "zk-srvr": (cmd_zk_srvr, 1),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 != COMMANDS[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    func, _ = COMMANDS[argv[1]]
    try:
        return func(*argv[2:])
    except (OSError, ValueError, RuntimeError, struct.error) as exc:
        print(f"{argv[1]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
