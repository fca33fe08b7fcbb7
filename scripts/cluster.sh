#!/usr/bin/env bash
# A local three-node pproxy cluster (delay messages in cluster mode, docs/ and delay.md §10) on
# 127.0.0.1, to try adds, cancels, status by id and failover by hand.
#
#   scripts/cluster.sh start  [--brokers HOST:PORT]   configure, build if needed, start, wait until ready
#   scripts/cluster.sh stop                           stop the three nodes (SIGTERM, then SIGKILL after 30 s)
#   scripts/cluster.sh status                         one line per node, with its journal partitions
#
# Nodes (Thrift / admin HTTP):  node1 127.0.0.1:9613 / 9623
#                               node2 127.0.0.1:9614 / 9624
#                               node3 127.0.0.1:9615 / 9625
#
# Kafka: 127.0.0.1:9092 by default; when nothing answers there, `scripts/stack.sh up kafka`
# starts the test stack's broker (and `scripts/stack.sh down kafka` stops it; this script never
# does). With --brokers, that Kafka is used as it is. The nodes journal adds and cancels to the
# compacted topic pproxy_inner_journal (pproxy creates it) and fire into the delay topic
# demo_delay (created here).
#
# State (kept across stop/start; delete the directory for a fresh cluster, and the journal
# topic too, or the new nodes replay it):
#
#   ${PPROXY_CLUSTER_DIR:-$HOME/.cache/pproxy-cluster}/
#     local-config.json            the topic config doc (local mode, config.md §10.3), shared
#     brokers                      the Kafka of the last start
#     nodeN/carrera.yaml           generated at each start
#     nodeN/data/                  the node's scheduler store
#     nodeN/logs/pproxy.log        its log; nodeN/console.log: its stderr
#     nodeN/pproxy.pid
#
# Environment: PPROXY_BIN (default: target/release/pproxy, built with cargo when unset),
# PPROXY_CLUSTER_DIR, PPROXY_CLUSTER_TOPIC (default demo_delay), PPROXY_CLUSTER_SESSION_MS
# (consumer-group session timeout: how long a killed node keeps its partitions; default 6000,
# the broker's usual minimum), PPROXY_CLUSTER_TIMEOUT (seconds to wait for readiness, default 60).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LOG_NAME=cluster
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
STATE=${PPROXY_CLUSTER_DIR:-$HOME/.cache/pproxy-cluster}
TOPIC=${PPROXY_CLUSTER_TOPIC:-demo_delay}
SESSION_MS=${PPROXY_CLUSTER_SESSION_MS:-6000}
TIMEOUT=${PPROXY_CLUSTER_TIMEOUT:-60}
DEFAULT_BROKERS=127.0.0.1:9092

NODES=(1 2 3)
THRIFT_PORTS=(9613 9614 9615)
ADMIN_PORTS=(9623 9624 9625)
PROXY_CLUSTER=P_cluster
KAFKA_CLUSTER=K_cluster
INNER_PREFIX=pproxy_inner_
JOURNAL_PARTITIONS=6

usage() {
  sed -n '5,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

node_dir() { printf '%s/node%s' "$STATE" "$1"; }
thrift_port() { printf '%s' "${THRIFT_PORTS[$(($1 - 1))]}"; }
admin_port() { printf '%s' "${ADMIN_PORTS[$(($1 - 1))]}"; }
# admin_url N PATH: PATH on node N's admin port.
admin_url() { printf 'http://127.0.0.1:%s%s' "$(admin_port "$1")" "$2"; }

# node_pid N: the pid of our running node N (its command line names its own carrera.yaml), or fail.
node_pid() {
  local f pid
  f=$(node_dir "$1")/pproxy.pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(node_dir "$1")/carrera.yaml" || return 1
  echo "$pid"
}

# ownership N: node N's journal partitions from GET /delay/cluster, one line.
ownership() {
  local body
  body=$(curl -s --max-time 3 "$(admin_url "$1" /delay/cluster)" 2>/dev/null) || {
    echo "no answer from /delay/cluster"
    return 0
  }
  python3 -c '
import json, sys
try:
    v = json.loads(sys.argv[1])
    parts = v.get("partitions", [])
    items = ["%s(%s, epoch %s)" % (p.get("partition"), p.get("state"), p.get("epoch")) for p in parts]
    print("node %s owns %d journal partition(s): %s" % (v.get("node"), len(parts), " ".join(items) or "-"))
except Exception:
    print("/delay/cluster: " + sys.argv[1][:200])
' "$body"
}

# active_count: "<partitions some node reports active> <partitions being replayed> <nodes owning
# at least one partition>".
active_count() {
  local n bodies=()
  for n in "${NODES[@]}"; do
    bodies+=("$(curl -s --max-time 2 "$(admin_url "$n" /delay/cluster)" 2>/dev/null || true)")
  done
  python3 -c '
import json, sys
active, replaying, owners = set(), set(), 0
for b in sys.argv[1:]:
    try:
        parts = json.loads(b).get("partitions", [])
        owners += 1 if parts else 0
        for p in parts:
            if p.get("state") == "active":
                active.add(p.get("partition"))
            else:
                replaying.add(p.get("partition"))
    except Exception:
        pass
print(len(active), len(replaying), owners)
' "${bodies[@]}"
}

# kafka_topic BROKERS TOPIC PARTITIONS: create the topic if it is missing (CreateTopics v1-v4 over
# the wire, standard library only, through the probe helpers of scripts/stack/) and wait until
# every partition has a leader.
kafka_topic() {
  local brokers=$1 topic=$2 partitions=$3 have leaders start=$SECONDS
  read -r have leaders <<<"$(python3 "$HERE/stack/probe.py" kafka-partitions "$brokers" "$topic" 2>/dev/null || echo "-2 0")"
  ((have != -2)) || die "no metadata answer from Kafka at $brokers"
  if ((have < 0)); then
    log "creating topic $topic ($partitions partitions) on $brokers"
    python3 - "$HERE/stack" "$brokers" "$topic" "$partitions" <<'EOF' || die "could not create topic $topic on $brokers; create it yourself and run start again"
import socket, struct, sys
sys.path.insert(0, sys.argv[1])
import probe
addr, topic, partitions = sys.argv[2], sys.argv[3], int(sys.argv[4])
name = topic.encode()
body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
body += struct.pack(">ihii", partitions, 1, 0, 0)  # replication 1, no assignments, no configs
body += struct.pack(">ib", 30000, 0)  # timeout_ms, validate_only = false
with socket.create_connection(probe.split_addr(addr), timeout=35) as sock:
    # Non-flexible CreateTopics versions share this body; Kafka 4 only accepts v2 and later.
    r = probe.kafka_call(sock, 18, 0, b"", 1)  # ApiVersions v0
    if r.i16():
        sys.exit("ApiVersions failed")
    ranges = {}
    for _ in range(r.i32()):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        ranges[key] = (lo, hi)
    lo, hi = ranges.get(19, (0, -1))
    usable = [v for v in range(1, 5) if lo <= v <= hi]
    if not usable:
        sys.exit(f"no CreateTopics version in 1..4 (broker: {lo}..{hi})")
    ver = max(usable)
    r = probe.kafka_call(sock, 19, ver, body, 2)
    if ver >= 2:
        r.i32()  # throttle_time_ms
    for _ in range(r.i32()):
        tname, err, msg = r.string(), r.i16(), r.string()
        if err not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
            sys.exit(f"CreateTopics {tname}: error {err} {msg or ''}")
EOF
  fi
  while :; do
    read -r have leaders <<<"$(python3 "$HERE/stack/probe.py" kafka-partitions "$brokers" "$topic" 2>/dev/null || echo "-2 0")"
    ((have > 0 && leaders == have)) && break
    ((SECONDS - start < TIMEOUT)) || die "topic $topic not ready on $brokers ($have partitions, $leaders with a leader)"
    sleep 0.2
  done
}

write_configs() {
  local brokers=$1 n dir
  mkdir -p "$STATE"
  cat >"$STATE/local-config.json" <<EOF
{
  "instance": "local",
  "proxyCluster": "$PROXY_CLUSTER",
  "brokerClusters": ["$KAFKA_CLUSTER"],
  "topics": ["$TOPIC"],
  "carreraConfiguration": {
    "useKafka": true,
    "kafkaProducers": 1,
    "maxTps": 20000,
    "delay": { "chronosInnerTopicPrefix": "$INNER_PREFIX", "innerTopicNum": 1 },
    "kafkaConfigurationMap": {
      "$KAFKA_CLUSTER": { "bootstrapServers": ["$brokers"], "acks": "all" }
    },
    "defaultTopicInfoConf": {
      "topics": [
        { "topic": "$TOPIC", "delayTopic": true,
          "topicUnits": [ { "brokerCluster": "$KAFKA_CLUSTER", "proxies": {},
                            "maxTps": 5000, "totalMaxTps": 5000 } ] }
      ]
    }
  }
}
EOF
  printf '%s\n' "$brokers" >"$STATE/brokers"
  for n in "${NODES[@]}"; do
    dir=$(node_dir "$n")
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$dir/carrera.yaml" <<EOF
# Generated by scripts/cluster.sh (node $n of 3); rewritten at each start.
host: 127.0.0.1
port: $(thrift_port "$n")
adminPort: $(admin_port "$n")
server:
  bindAddr: 127.0.0.1
  adminBindAddr: 127.0.0.1
dataDir: $dir/data
localConfig: $STATE/local-config.json
scheduler:
  cluster:
    enabled: true
    journalCluster: $KAFKA_CLUSTER
    journalTopic: ""                 # ${INNER_PREFIX}journal
    journalPartitions: $JOURNAL_PARTITIONS
    sessionTimeoutMs: $SESSION_MS
    heartbeatMs: 100
    group: ""                        # pproxy-scheduler-$PROXY_CLUSTER
EOF
  done
}

pproxy_bin() {
  local bin
  if [[ -n ${PPROXY_BIN:-} ]]; then
    # The nodes run in their own directories: an absolute path.
    if [[ $PPROXY_BIN == */* ]]; then
      bin=$(realpath -- "$PPROXY_BIN" 2>/dev/null) || bin=$PPROXY_BIN
    else
      bin=$(command -v -- "$PPROXY_BIN") || bin=$PPROXY_BIN
    fi
    [[ -x $bin && -f $bin ]] || die "PPROXY_BIN=$PPROXY_BIN is not an executable file"
    printf '%s' "$bin"
    return 0
  fi
  log "building target/release/pproxy (cargo build --release)"
  (cd "$ROOT" && cargo build --release --locked --bin pproxy) >&2 || die "cargo build failed"
  printf '%s' "$ROOT/target/release/pproxy"
}

start() {
  local brokers=$1 n dir pid running=0 start_s
  local -A pids=()
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null && running=$((running + 1))
  done
  if ((running == ${#NODES[@]})); then
    log "already running"
    status
    return 0
  fi
  command -v curl >/dev/null || die "curl is needed"
  command -v python3 >/dev/null || die "python3 is needed"

  if ! port_busy "$brokers"; then
    if [[ $brokers == "$DEFAULT_BROKERS" ]]; then
      log "no Kafka at $brokers: starting the test stack's (scripts/stack.sh up kafka)"
      "$HERE/stack.sh" up kafka
    else
      die "no Kafka answers at $brokers"
    fi
  fi
  python3 "$HERE/stack/probe.py" kafka-ready "$brokers" >/dev/null || die "Kafka at $brokers does not answer metadata requests"
  kafka_topic "$brokers" "$TOPIC" 3

  PPROXY=$(pproxy_bin)
  local bin=$PPROXY
  write_configs "$brokers"
  "$bin" check-config -c "$(node_dir 1)/carrera.yaml" >/dev/null ||
    { "$bin" check-config -c "$(node_dir 1)/carrera.yaml" || true; die "configuration refused (above)"; }

  for n in "${NODES[@]}"; do
    dir=$(node_dir "$n")
    if pid=$(node_pid "$n"); then
      log "node$n: already running (pid $pid)"
      pids[$n]=$pid
      continue
    fi
    for port in "$(thrift_port "$n")" "$(admin_port "$n")"; do
      ! port_busy "127.0.0.1:$port" || die "node$n: port $port is in use by a process this script did not start"
    done
    rm -f "$dir/pproxy.pid"
    [[ -f $dir/console.log ]] && mv -f "$dir/console.log" "$dir/console.log.1"
    # Detached: the nodes outlive this script and do not get a Ctrl-C of its terminal.
    pproxy_start --detach "$dir" "$dir/carrera.yaml" --pid-file "$dir/pproxy.pid" --log-dir "$dir/logs"
    pids[$n]=$PPROXY_PID
    log "node$n: starting (Thrift 127.0.0.1:$(thrift_port "$n"), admin 127.0.0.1:$(admin_port "$n"), log $dir/logs/pproxy.log)"
  done

  start_s=$SECONDS
  for n in "${NODES[@]}"; do
    dir=$(node_dir "$n")
    # One TIMEOUT for the three nodes together.
    pproxy_wait_ready "$(admin_port "$n")" $((TIMEOUT - (SECONDS - start_s))) "${pids[$n]}" "$dir/console.log" ||
      die "node$n not ready"
    log "node$n: ready (pid $(node_pid "$n" || echo '?'))"
  done
  # Settled: every partition active, none replaying, and every node owning some (a node that
  # just started joins the consumer group after it is ready).
  local active replaying owners
  while read -r active replaying owners <<<"$(active_count)"
    ((active < JOURNAL_PARTITIONS || replaying > 0 || owners < ${#NODES[@]})); do
    if ((SECONDS - start_s >= TIMEOUT)); then
      log "warning: the journal partitions are not settled yet (active $active, replaying $replaying, on $owners nodes)"
      break
    fi
    sleep 0.5
  done
  status
  cat <<EOF

Three pproxy nodes share the journal ${INNER_PREFIX}journal on $brokers. Try:

  # a delay message due in 20 s, added through node1 (prints: code msg id)
  $bin delay add --addr 127.0.0.1:9613 --topic $TOPIC --body hello --in 20s

  # its status from any node (forwarded to the owner of its journal partition)
  curl -s http://127.0.0.1:9625/delay/ID
  $bin delay --admin http://127.0.0.1:9624 status ID

  # cancel it through another node
  $bin delay cancel --addr 127.0.0.1:9615 --topic $TOPIC --id ID

  # a loop: 5 fires, 10 s apart, through node2
  $bin delay add --addr 127.0.0.1:9614 --topic $TOPIC --body tick --type 3 --interval 10 --times 5 --in 5s --expire \$((\$(date +%s) + 3600))

  # who owns which journal partition
  curl -s http://127.0.0.1:9623/delay/cluster

  # failover: kill -9 a node and watch its partitions move (session timeout ${SESSION_MS} ms)
  kill -9 \$(cat $(node_dir 2)/pproxy.pid); $0 status

The fired messages land in Kafka topic $TOPIC (key = occurrence id, header from_chronos).
Stop with: $0 stop
EOF
}

stop() {
  local n pid
  local -A pids=()
  for n in "${NODES[@]}"; do
    if ! pid=$(node_pid "$n"); then
      rm -f "$(node_dir "$n")/pproxy.pid"
      continue
    fi
    pids[$n]=$pid
    log "node$n: stopping (pid $pid)"
  done
  if ((${#pids[@]} > 0)); then
    stop_pids 30 "${pids[@]}"
    for n in "${NODES[@]}"; do
      [[ -n ${pids[$n]:-} ]] || continue
      rm -f "$(node_dir "$n")/pproxy.pid"
      log "node$n: stopped"
    done
  else
    log "not running"
  fi
  log "Kafka keeps running (scripts/stack.sh down kafka stops the test stack's)"
}

status() {
  local n pid code up=0
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n"); then
      up=$((up + 1))
      code=$(http_code "$(admin_url "$n" /ready)")
      if [[ $code == 200 ]]; then
        printf 'node%s  running  pid %-7s 127.0.0.1:%s admin :%s  ready      %s\n' \
          "$n" "$pid" "$(thrift_port "$n")" "$(admin_port "$n")" "$(ownership "$n")"
      else
        printf 'node%s  running  pid %-7s 127.0.0.1:%s admin :%s  not ready  %s\n' \
          "$n" "$pid" "$(thrift_port "$n")" "$(admin_port "$n")" \
          "$(curl -s --max-time 2 "$(admin_url "$n" /ready)" || echo 'admin port unreachable')"
      fi
    else
      printf 'node%s  stopped                  127.0.0.1:%s admin :%s\n' "$n" "$(thrift_port "$n")" "$(admin_port "$n")"
    fi
  done
  if ((up > 0)); then
    local active replaying owners
    read -r active replaying owners <<<"$(active_count)"
    printf 'journal partitions active: %s of %s, %s replaying (Kafka %s)\n' "$active" "$JOURNAL_PARTITIONS" "$replaying" \
      "$(cat "$STATE/brokers" 2>/dev/null || echo '?')"
  fi
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
BROKERS=$DEFAULT_BROKERS
while (($# > 0)); do
  case $1 in
    --brokers)
      (($# >= 2)) || die "--brokers needs HOST:PORT"
      BROKERS=$2
      shift 2
      ;;
    --brokers=*)
      BROKERS=${1#--brokers=}
      shift
      ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $BROKERS =~ ^[^:]+:[0-9]+$ ]] || die "--brokers wants HOST:PORT, got '$BROKERS'"

case $cmd in
  start) start "$BROKERS" ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
