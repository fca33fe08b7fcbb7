#!/usr/bin/env bash
# pproxy against the direct producers it stands in for, on the real servers of scripts/stack.sh
# (issue #5). One load generator (loadgen/src/main.rs) drives both sides.
#
#   scripts/bench.sh [full]    Kafka, then RocketMQ (~7 min): max rate at 64 connections with
#                              100 B and 1 KiB bodies, latency at half of the lower max rate,
#                              one lone synchronous client; tables with ratios at the end
#   scripts/bench.sh kafka     the Kafka half only
#   scripts/bench.sh rocketmq  the RocketMQ half only
#   scripts/bench.sh kafka-max the Kafka maximum-rate pairs only (~1.5 min), to try a setting
#   scripts/bench.sh smoke     Kafka only, every method and partition mode for ~1.5 s each with
#                              4 connections; fails unless every summary parses and shows
#                              messages stored (the harness check for the test suite, ~25 s)
#   scripts/bench.sh tls       Kafka: TLS against plaintext on one pproxy (max rate at 64
#                              connections, 100 B; and a new connection per call, the
#                              handshake's cost), ~2 min
#   scripts/bench.sh perf      perf record -g of pproxy under max-rate Kafka load, top entries
#   scripts/bench.sh sweep     throughput against connections: direct and pproxy at 1, 4, 16, 64
#                              and 256 connections (BENCH_SWEEP_CONNS), 100 B, closed loop, one
#                              run each of BENCH_SECS (default 4 here), Kafka then RocketMQ,
#                              ~2.5 min
#   scripts/bench.sh delay     Kafka, one node: sendDelaySync adds at max rate (BENCH_CONNS
#                              connections, due BENCH_DELAY_MS = 2000 ms after the add), then
#                              the lateness of their fires from pproxy's /metrics histogram
#                              pproxy_delay_fire_lateness_seconds, scraped before and after
#                              (until nothing is pending), ~30 s
#   scripts/bench.sh pending   Kafka, one node: BENCH_PENDING (10 000 000) far-future delay adds
#                              (due in a day) through Thrift in 30 s rounds at max rate; with
#                              those pending, fire lateness at BENCH_PENDING_RATE (10 000)
#                              adds/s due 2 s later for 20 s (pending-lateness.json); then a
#                              few thousand due 20 s later, the pproxy process's RSS,
#                              kill -9, and a restart on the same store: seconds to /ready, to
#                              a sendSync answered 0 and to the first fire of an overdue
#                              message (pending.json); ~6 min for 10M
#   scripts/bench.sh fires     Kafka, one node: BENCH_FIRES (500 000) delay adds, pproxy stopped
#                              (SIGTERM) until all are overdue, started again: the rate of the
#                              catch-up is the maximum fire rate (fires.json), ~2.5 min
#   scripts/bench.sh all       full, sweep, delay, pending (BENCH_PENDING defaults to 1 000 000
#                              here) and fires in one go, then the tables and plots; prints the
#                              wall time (11 min 29 s without the build on 2026-12-06)
#   scripts/bench.sh table     print the tables again from the JSON summaries (and re-plot)
#   scripts/bench.sh plot      only the plots, from the JSON summaries
#
# Every comparison of full/kafka/rocketmq runs twice, interleaved (direct, pproxy, direct,
# pproxy), because the machine is shared: both runs are reported. JSON summaries, logs and
# tables go to target/bench/ (BENCH_OUT). Timing targets live in docs/BENCHMARKS.md, never in
# this script's exit status.
#
# Plots: every mode but smoke and perf ends with scripts/plot.py, which reads all the JSON
# summaries in BENCH_OUT and rewrites the SVGs in docs/bench/ (BENCH_PLOTS) that it has data
# for: throughput-connections.svg (sweep), latency-percentiles.svg, cpu-per-message.svg,
# delay-lateness.svg (delay, pending). It runs in a virtualenv OUTSIDE the repository,
# ${BENCH_PLOT_VENV:-~/.cache/pproxy-plot/venv}, made on first use with matplotlib from PyPI
# (pinned: the same JSON gives the same SVG bytes). BENCH_NO_PLOT=1 skips the plots.
#
# Environment: BENCH_SECS (measured seconds per run, default 8), BENCH_WARMUP (default 1),
# BENCH_CONNS (default 64), BENCH_NO_BUILD=1 (use the binaries in target/release as they are),
# BENCH_PROXY_YAML (extra carrera.yaml lines for every pproxy started, e.g. kafkaOverrides to try
# a producer setting without a rebuild), BENCH_VERBOSE=1 (show the load generator's progress lines), PPROXY_BIN and LOADGEN_BIN (binaries
# other than target/release/{pproxy,loadgen}), KAFKA (127.0.0.1:9092),
# NAMESRV (127.0.0.1:9876), BENCH_SWEEP_CONNS ("1 4 16 64 256"), BENCH_DELAY_MS (2000),
# BENCH_PLOTS (docs/bench), BENCH_PLOT_VENV, BENCH_NO_PLOT=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_NAME=bench
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

MODE=${1:-full}
OUT=${BENCH_OUT:-$ROOT/target/bench}
SECS=${BENCH_SECS:-8}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNS:-64}
KAFKA=${KAFKA:-127.0.0.1:9092}
NAMESRV=${NAMESRV:-127.0.0.1:9876}
PPROXY=${PPROXY_BIN:-$ROOT/target/release/pproxy} # lib.sh's pproxy_start runs $PPROXY
LOADGEN=${LOADGEN_BIN:-$ROOT/target/release/loadgen}

PROXY_PID=
PROXY_DIR=
PROXY_ADDR=
PROXY_ADMIN=
cleanup() {
  stop_proxy
}
trap cleanup EXIT

# ------------------------------------------------------------------ pproxy

# start_proxy LOCAL_JSON [YAML]: pproxy (release) in local mode with that proxy config (and extra
# carrera.yaml lines), in a temp dir that also holds its logs and delay store.
start_proxy() {
  local doc=$1 extra=${2:-} port admin
  extra+=$'\n'${BENCH_PROXY_YAML:-}
  PROXY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pproxy-bench.XXXXXX")
  port=$(free_port)
  admin=$(free_port)
  printf '%s\n' "$doc" >"$PROXY_DIR/local.json"
  printf 'host: 127.0.0.1\nport: %s\nadminPort: %s\nlocalConfig: local.json\nserver:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 127.0.0.1\n%s\n' \
    "$port" "$admin" "$extra" >"$PROXY_DIR/c.yaml"
  pproxy_start "$PROXY_DIR" c.yaml
  PROXY_PID=$PPROXY_PID
  PROXY_ADDR=127.0.0.1:$port
  PROXY_ADMIN=127.0.0.1:$admin
  pproxy_wait_ready "$admin" 60 "$PROXY_PID" "$PROXY_DIR/console.log" || die "pproxy did not start"
  log "pproxy pid $PROXY_PID on $PROXY_ADDR ($PROXY_DIR)"
}

# restart_proxy: pproxy again in the directory of start_proxy (its config, store and ports).
restart_proxy() {
  pproxy_start "$PROXY_DIR" c.yaml
  PROXY_PID=$PPROXY_PID
}

stop_proxy() {
  if [[ -n $PROXY_PID ]]; then
    stop_pids 60 "$PROXY_PID"
    PROXY_PID=
  fi
  if [[ -n $PROXY_DIR ]]; then
    rm -rf "$PROXY_DIR"
    PROXY_DIR=
  fi
}

# make_certs DIR: a test CA (DIR/ca.pem) and a server certificate for 127.0.0.1 (DIR/server.*).
make_certs() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 2 -subj "/CN=bench ca" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
      -subj "/CN=pproxy" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
  ) || die "openssl failed"
}

tls_yaml() { printf 'tls:\n  certFile: %s/server.pem\n  keyFile: %s/server.key\n' "$1" "$1"; }

# kafka_config TOPIC [DELAY_TOPIC]: one Kafka cluster, pproxy's shipped defaults otherwise.
kafka_config() {
  local t=$1 d=${2:-} topics
  topics="{\"topic\":\"$t\",\"topicUnits\":[{\"brokerCluster\":\"K\"}]}"
  [[ -z $d ]] || topics+=",{\"topic\":\"$d\",\"delayTopic\":true,\"topicUnits\":[{\"brokerCluster\":\"K\"}]}"
  cat <<EOF
{"brokerClusters":["K"],"carreraConfiguration":{"useKafka":true,
 "kafkaConfigurationMap":{"K":{"bootstrapServers":["$KAFKA"],"acks":"all"}},
 "defaultTopicInfoConf":{"topics":[$topics]}}}
EOF
}

# rocketmq_config TOPIC AUTOBATCH_TOPIC: auto-batch is on for the proxy, and only the second
# topic is an autoBatch topic, so sendSync to the first is never batched.
rocketmq_config() {
  cat <<EOF
{"brokerClusters":["R"],"carreraConfiguration":{"useRocketmq":true,"useAutoBatch":true,
 "rocketmqConfigurationMap":{"R":{"namesrvAddrs":["$NAMESRV"]}},
 "defaultTopicInfoConf":{"topics":[
   {"topic":"$1","topicUnits":[{"brokerCluster":"R"}]},
   {"topic":"$2","autoBatch":true,"topicUnits":[{"brokerCluster":"R"}]}]}}}
EOF
}

# ------------------------------------------------------------------ runs

# broker_pids COMPONENT: the load generator also reports the CPU of that component's servers.
BROKER_ARGS=()
broker_pids() {
  local p
  BROKER_ARGS=()
  for p in $(scripts/stack.sh pids "$1"); do BROKER_ARGS+=(--broker-pid "$p"); done
}

# lg NAME SUBCOMMAND ARGS...: one load generator run; summary in $OUT/NAME.json.
lg() {
  local name=$1
  shift
  local err=$OUT/logs/$name.err
  mkdir -p "$OUT/logs"
  local rc=0
  if [[ ${BENCH_VERBOSE:-0} == 1 ]]; then
    "$LOADGEN" "$@" "${BROKER_ARGS[@]}" --json "$OUT/$name.json" >/dev/null 2> >(tee "$err" >&2) || rc=$?
  else
    "$LOADGEN" "$@" "${BROKER_ARGS[@]}" --json "$OUT/$name.json" >/dev/null 2>"$err" || rc=$?
  fi
  if ((rc != 0)); then
    tail -n 5 "$err" >&2
    die "$name failed (exit $rc)"
  fi
  jq -r --arg n "$name" '"\($n): \(.throughput) msg/s  p50 \(.latency_us.p50) us  p99 \(.latency_us.p99) us  errors \(.errors_total)" +
      (if .proxy_cpu then "  pproxy \(.proxy_cpu.us_per_msg) us/msg" else "" end)' "$OUT/$name.json" >&2
}

proxy_run() {
  local name=$1
  shift
  lg "$name" proxy --addr "$PROXY_ADDR" --proxy-pid "$PROXY_PID" "$@"
}

# half_rate PREFIX: half of the mean pproxy max rate of the two 100 B rounds, or of the direct
# producer's when that is lower: the added latency needs a rate both sides carry (RocketMQ's
# direct producer peaks below half of pproxy's maximum, and queued without bound at that rate).
half_rate() {
  local o=$OUT/$1-max-100
  jq -s '[(.[0:2] | map(.throughput) | add / 2), (.[2:4] | map(.throughput) | add / 2)] | min / 2 | floor' \
    "$o-proxy-r1.json" "$o-proxy-r2.json" "$o-direct-r1.json" "$o-direct-r2.json"
}

stamp() { date +%s%N | cut -c1-13; }

record_env() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uptime: $(uptime)"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
    echo "mem: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  } >>"$OUT/env-$1.txt"
}

bench_kafka() {
  local t size r half
  scripts/stack.sh up kafka
  broker_pids kafka
  t=bench-kafka-$(stamp)
  scripts/stack.sh kafka-topic "$t" 4 >/dev/null
  start_proxy "$(kafka_config "$t")"
  record_env kafka
  local common=(--topic "$t" --secs "$SECS" --warmup "$WARMUP")
  for size in 100 1024; do
    for r in 1 2; do
      lg "kafka-max-$size-direct-r$r" direct-kafka --bootstrap "$KAFKA" "${common[@]}" --conns "$CONNS" --size "$size"
      proxy_run "kafka-max-$size-proxy-r$r" "${common[@]}" --conns "$CONNS" --size "$size"
    done
  done
  if [[ ${1:-} == max ]]; then
    record_env kafka
    stop_proxy
    return
  fi
  half=$(half_rate kafka)
  log "half of the lower max rate (pproxy's or the direct producer's): $half msg/s"
  for r in 1 2; do
    lg "kafka-half-direct-r$r" direct-kafka --bootstrap "$KAFKA" "${common[@]}" --conns "$CONNS" --size 100 --rate "$half"
    proxy_run "kafka-half-proxy-r$r" "${common[@]}" --conns "$CONNS" --size 100 --rate "$half"
  done
  for r in 1 2; do
    lg "kafka-lone-direct-r$r" direct-kafka --bootstrap "$KAFKA" "${common[@]}" --conns 1 --size 100
    proxy_run "kafka-lone-proxy-r$r" "${common[@]}" --conns 1 --size 100
  done
  # Paced loads well below the maximum: what each side's threads spend per message.
  for rate in 1000 5000; do
    for r in 1 2; do
      lg "kafka-paced-$rate-direct-r$r" direct-kafka --bootstrap "$KAFKA" "${common[@]}" --conns "$CONNS" --size 100 --rate "$rate"
      proxy_run "kafka-paced-$rate-proxy-r$r" "${common[@]}" --conns "$CONNS" --size 100 --rate "$rate"
    done
  done
  record_env kafka
  stop_proxy
}

bench_rocketmq() {
  local t ab size r half
  scripts/stack.sh up rocketmq
  broker_pids rocketmq
  t=bench-rmq-$(stamp)
  ab=bench-rmq-ab-$(stamp)
  scripts/stack.sh rocketmq-topic "$t" 4 >/dev/null
  scripts/stack.sh rocketmq-topic "$ab" 4 >/dev/null
  start_proxy "$(rocketmq_config "$t" "$ab")"
  record_env rocketmq
  local common=(--secs "$SECS" --warmup "$WARMUP")
  for size in 100 1024; do
    for r in 1 2; do
      lg "rmq-max-$size-direct-r$r" direct-rocketmq --namesrv "$NAMESRV" --topic "$t" "${common[@]}" --conns "$CONNS" --size "$size"
      proxy_run "rmq-max-$size-proxy-r$r" --topic "$t" "${common[@]}" --conns "$CONNS" --size "$size"
    done
  done
  half=$(half_rate rmq)
  log "half of the lower max rate (pproxy's or the direct producer's): $half msg/s"
  for r in 1 2; do
    lg "rmq-half-direct-r$r" direct-rocketmq --namesrv "$NAMESRV" --topic "$t" "${common[@]}" --conns "$CONNS" --size 100 --rate "$half"
    proxy_run "rmq-half-proxy-r$r" --topic "$t" "${common[@]}" --conns "$CONNS" --size 100 --rate "$half"
  done
  # The lone synchronous client on the autoBatch topic: an idle lane sends at once.
  for r in 1 2; do
    lg "rmq-lone-direct-r$r" direct-rocketmq --namesrv "$NAMESRV" --topic "$ab" "${common[@]}" --conns 1 --size 100
    proxy_run "rmq-lone-proxy-r$r" --topic "$ab" "${common[@]}" --conns 1 --size 100
  done
  # What auto-batch buys at 64 connections (same direct peer as the plain topic).
  for r in 1 2; do
    proxy_run "rmq-autobatch-100-proxy-r$r" --topic "$ab" "${common[@]}" --conns "$CONNS" --size 100
  done
  record_env rocketmq
  stop_proxy
}

bench_tls() {
  local t r certs=$OUT/certs
  scripts/stack.sh up kafka
  t=bench-tls-$(stamp)
  scripts/stack.sh kafka-topic "$t" 4 >/dev/null
  make_certs "$certs"
  start_proxy "$(kafka_config "$t")" "$(tls_yaml "$certs")"
  record_env tls
  local common=(--topic "$t" --secs "$SECS" --warmup "$WARMUP" --size 100)
  local tls=(--tls-ca "$certs/ca.pem")
  for r in 1 2; do
    proxy_run "tls-max-plain-r$r" "${common[@]}" --conns "$CONNS"
    proxy_run "tls-max-tls-r$r" "${common[@]}" --conns "$CONNS" "${tls[@]}"
  done
  for r in 1 2; do
    proxy_run "tls-fresh-plain-r$r" "${common[@]}" --conns 8 --fresh-connections
    proxy_run "tls-fresh-tls-r$r" "${common[@]}" --conns 8 --fresh-connections "${tls[@]}"
  done
  record_env tls
  stop_proxy
}

# cluster_config DELAY_TOPIC: one Kafka cluster, one delay topic, the inner-topic prefix cluster
# mode needs (the same document serves the single-node run).
cluster_config() {
  cat <<EOF
{"brokerClusters":["K"],"proxyCluster":"P_bench","carreraConfiguration":{"useKafka":true,
 "delay":{"chronosInnerTopicPrefix":"bench_inner_","innerTopicNum":1},
 "kafkaConfigurationMap":{"K":{"bootstrapServers":["$KAFKA"],"acks":"all"}},
 "defaultTopicInfoConf":{"topics":[{"topic":"$1","delayTopic":true,"topicUnits":[{"brokerCluster":"K"}]}]}}}
EOF
}

# Durable delay adds (due in 10 min, so nothing fires): a single node's sled store against
# cluster mode's journal append (acks=all), alternating, a fresh pproxy for each run.
bench_cluster() {
  local d r
  scripts/stack.sh up kafka
  d=bench-cl-$(stamp)
  scripts/stack.sh kafka-topic "$d" 4 >/dev/null
  record_env cluster
  local common=(--topic "$d" --secs "$SECS" --warmup "$WARMUP" --size 100 --method delay --delay-ms 600000)
  for r in 1 2; do
    start_proxy "$(cluster_config "$d")"
    proxy_run "cluster-adds-single-r$r" "${common[@]}" --conns "$CONNS"
    proxy_run "cluster-lone-single-r$r" "${common[@]}" --conns 1
    stop_proxy
    start_proxy "$(cluster_config "$d")" "$(printf 'scheduler:\n  cluster:\n    enabled: true\n    journalCluster: K\n    journalTopic: bench_inner_journal_%s\n    journalPartitions: 4' "$(stamp)")"
    proxy_run "cluster-adds-cluster-r$r" "${common[@]}" --conns "$CONNS"
    proxy_run "cluster-lone-cluster-r$r" "${common[@]}" --conns 1
    stop_proxy
  done
  record_env cluster
}

bench_smoke() {
  local t d name f short=(--secs 1.5 --warmup 0.3 --conns 4 --size 100) certs=$OUT/certs
  scripts/stack.sh up kafka
  broker_pids kafka
  t=bench-smoke-$(stamp)
  d=bench-smoke-delay-$(stamp)
  scripts/stack.sh kafka-topic "$t" 4 >/dev/null
  scripts/stack.sh kafka-topic "$d" 4 >/dev/null
  make_certs "$certs"
  start_proxy "$(kafka_config "$t" "$d")" "$(tls_yaml "$certs")"
  lg smoke-direct direct-kafka --bootstrap "$KAFKA" --topic "$t" "${short[@]}" --partition hash
  proxy_run smoke-sync-explicit --topic "$t" "${short[@]}" --method sync --partition explicit
  proxy_run smoke-async-hash --topic "$t" "${short[@]}" --method async --partition hash
  proxy_run smoke-batch-random --topic "$t" "${short[@]}" --method batch --batch 5 --partition random
  proxy_run smoke-delay --topic "$d" "${short[@]}" --method delay --delay-ms 600000
  proxy_run smoke-rate --topic "$t" "${short[@]}" --method sync --rate 200
  proxy_run smoke-tls-fresh --topic "$t" "${short[@]}" --tls-ca "$certs/ca.pem" --fresh-connections
  stop_proxy
  for name in smoke-direct smoke-sync-explicit smoke-async-hash smoke-batch-random smoke-delay smoke-rate smoke-tls-fresh; do
    f=$OUT/$name.json
    jq -e '.throughput > 0 and .latency_us.count > 0 and .latency_us.p50 > 0 and .errors_total == 0
           and .broker_cpu.cpu_s != null and .machine_cpu.cpu_s != null and (.self_threads | length) > 0
           and (.mode == "direct-kafka" or (.proxy_cpu.cpu_s != null and (.proxy_threads | length) > 0))' "$f" >/dev/null ||
      die "$name: summary missing, unparsable, without throughput or with errors ($f)"
  done
  # Fixed rate: about the offered rate, not the maximum.
  jq -e '.throughput > 100 and .throughput < 300' "$OUT/smoke-rate.json" >/dev/null ||
    die "smoke-rate: $(jq .throughput "$OUT/smoke-rate.json") msg/s offered 200"
  log "smoke ok"
}

bench_perf() {
  local t dur=${BENCH_PERF_SECS:-8}
  command -v perf >/dev/null || die "no perf"
  mkdir -p "$OUT/logs"
  scripts/stack.sh up kafka
  t=bench-perf-$(stamp)
  scripts/stack.sh kafka-topic "$t" 4 >/dev/null
  start_proxy "$(kafka_config "$t")"
  "$LOADGEN" proxy --addr "$PROXY_ADDR" --proxy-pid "$PROXY_PID" --topic "$t" --conns "$CONNS" \
    --size 100 --secs $((dur + 2)) --warmup 1 --quiet --json "$OUT/perf-load.json" >/dev/null &
  local lg_pid=$!
  sleep 2
  perf record -g -F 999 -p "$PROXY_PID" -o "$OUT/perf.data" -- sleep "$dur" 2>"$OUT/logs/perf-record.err"
  wait "$lg_pid"
  stop_proxy
  perf report -i "$OUT/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.5 \
    2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 10 | tee "$OUT/perf-top.txt"
  # By thread: librdkafka's broker and poll threads against pproxy's tokio workers.
  perf report -i "$OUT/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null |
    grep '%' | tee -a "$OUT/perf-top.txt"
}

# Throughput against connections (the plot of scripts/plot.py): one run per point, direct then
# pproxy, short windows; stale points of an earlier sweep of the same backend are removed first.
bench_sweep() {
  local be t ab c secs=${BENCH_SECS:-4} direct=()
  local conns_list=${BENCH_SWEEP_CONNS:-1 4 16 64 256}
  local common=(--secs "$secs" --warmup "$WARMUP" --size 100)
  for be in kafka rmq; do
    rm -f "$OUT"/sweep-"$be"-c*.json
    if [[ $be == kafka ]]; then
      scripts/stack.sh up kafka
      broker_pids kafka
      t=bench-sweep-kafka-$(stamp)
      scripts/stack.sh kafka-topic "$t" 4 >/dev/null
      start_proxy "$(kafka_config "$t")"
      direct=(direct-kafka --bootstrap "$KAFKA")
    else
      scripts/stack.sh up rocketmq
      broker_pids rocketmq
      t=bench-sweep-rmq-$(stamp)
      ab=bench-sweep-rmq-ab-$(stamp)
      scripts/stack.sh rocketmq-topic "$t" 4 >/dev/null
      scripts/stack.sh rocketmq-topic "$ab" 4 >/dev/null
      start_proxy "$(rocketmq_config "$t" "$ab")"
      direct=(direct-rocketmq --namesrv "$NAMESRV")
    fi
    record_env sweep
    for c in $conns_list; do
      lg "sweep-$be-c$c-direct" "${direct[@]}" --topic "$t" "${common[@]}" --conns "$c"
      proxy_run "sweep-$be-c$c-proxy" --topic "$t" "${common[@]}" --conns "$c"
    done
    stop_proxy
  done
  record_env sweep
}

# scrape_delay FILE: pproxy's delay metrics (the lateness histogram, pending) as JSON in FILE.
scrape_delay() {
  curl -sf --max-time 5 "http://$PROXY_ADMIN/metrics" | python3 -c '
import json, re, sys
out = {"buckets": [], "count": 0, "sum": 0.0, "pending": 0.0}
for line in sys.stdin:
    m = re.match(r"pproxy_delay_fire_lateness_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        out["buckets"].append([m.group(1), int(float(m.group(2)))])
    elif line.startswith("pproxy_delay_fire_lateness_seconds_count"):
        out["count"] = int(float(line.split()[-1]))
    elif line.startswith("pproxy_delay_fire_lateness_seconds_sum"):
        out["sum"] = float(line.split()[-1])
    elif re.match(r"pproxy_delay_pending(\{.*\})? ", line):
        out["pending"] += float(line.split()[-1])
json.dump(out, sys.stdout)
' >"$1" || die "scraping http://$PROXY_ADMIN/metrics failed"
}

# delay_proxy NAME: Kafka up, an output topic and a delay topic of 4 partitions (DELAY_OUT,
# DELAY_TOPIC, named after NAME), pproxy started on them, the environment recorded as NAME.
delay_proxy() {
  mkdir -p "$OUT/logs"
  scripts/stack.sh up kafka
  broker_pids kafka
  DELAY_OUT=bench-$1-out-$(stamp)
  DELAY_TOPIC=bench-$1-$(stamp)
  scripts/stack.sh kafka-topic "$DELAY_OUT" 4 >/dev/null
  scripts/stack.sh kafka-topic "$DELAY_TOPIC" 4 >/dev/null
  start_proxy "$(kafka_config "$DELAY_OUT" "$DELAY_TOPIC")"
  record_env "$1"
}

# lateness_diff BEFORE AFTER: the fires between two scrape_delay files, as JSON: their count,
# lateness sum and mean, quantiles as bucket bounds, the buckets, what was pending at each scrape.
lateness_diff() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
base = dict(b["buckets"])
buckets = [[le, n - base.get(le, 0)] for le, n in a["buckets"]]  # cumulative, as scraped
fires = a["count"] - b["count"]
def bound(q):  # the upper bound (seconds) of the bucket that holds the q-quantile
    for le, n in buckets:
        if fires and n >= q * fires:
            return le
    return None
json.dump({
    "fires": fires, "sum_s": round(a["sum"] - b["sum"], 3),
    "mean_ms": round((a["sum"] - b["sum"]) / fires * 1000, 2) if fires else None,
    "p50_le": bound(0.5), "p99_le": bound(0.99), "p999_le": bound(0.999),
    "buckets": buckets, "pending_before": b["pending"], "pending_after": a["pending"],
}, sys.stdout, indent=2)
print()
EOF
}

# Delay adds at max rate through Thrift, then the lateness of their fires: the difference of
# the lateness histogram between a scrape before the adds and one after nothing is pending
# (delay-lateness.json). Fires/s is from scrapes every 0.5 s while they fall due; they fall due
# at the rate they were added, so it is bounded by the add rate.
bench_delay() {
  local d before=$OUT/logs/delay-metrics-before.json after=$OUT/logs/delay-metrics-after.json
  local delay_ms=${BENCH_DELAY_MS:-2000} wait_end now count base first=0 t_first=0 last=0 t_last=0
  delay_proxy delay
  d=$DELAY_TOPIC
  scrape_delay "$before"
  proxy_run delay-adds-proxy --topic "$d" --secs "$SECS" --warmup "$WARMUP" --size 100 --conns "$CONNS" \
    --method delay --delay-ms "$delay_ms"
  # Until nothing is pending, at most the delay plus 120 s.
  base=$(jq .count "$before")
  wait_end=$((SECONDS + delay_ms / 1000 + 120))
  while :; do
    scrape_delay "$after"
    now=$(date +%s.%N)
    count=$(jq .count "$after")
    if ((count > base)); then
      [[ $first != 0 ]] || first=$count t_first=$now
      ((count <= last)) || last=$count t_last=$now
      [[ $(jq '.pending == 0' "$after") != true ]] || break
    fi
    if ((SECONDS >= wait_end)); then
      log "delay: still $(jq .pending "$after") pending after waiting; lateness of the fires so far"
      break
    fi
    sleep 0.5
  done
  lateness_diff "$before" "$after" |
    jq --argjson delay_ms "$delay_ms" --slurpfile adds "$OUT/delay-adds-proxy.json" \
      --argjson first "$first" --argjson t_first "$t_first" --argjson last "$last" \
      --argjson t_last "$t_last" --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" \
      '{tool: "bench-delay", delay_ms: $delay_ms} + . + {adds: $adds[0].ok_msgs,
        adds_per_s: $adds[0].throughput,
        fires_per_s: (if $t_last > $t_first then (($last - $first) / ($t_last - $t_first) * 10 | round / 10) else null end),
        unix_time: (now | floor), loadavg: $loadavg}' >"$OUT/delay-lateness.json"
  jq -r '"delay: \(.fires) fires, \(.fires_per_s) fires/s, lateness p50 <= \(.p50_le) s, p99 <= \(.p99_le) s, p99.9 <= \(.p999_le) s, mean \(.mean_ms) ms, pending after \(.pending_after)"' \
    "$OUT/delay-lateness.json" >&2
  record_env delay
  stop_proxy
}

# metric_sum NAME: the sum of every series of one pproxy metric (0 when absent).
metric_sum() {
  curl -sf --max-time 5 "http://$PROXY_ADMIN/metrics" |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }' || true
}

# since START: seconds from START (date +%s.%N) to now, 3 decimals.
since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.3f\n", a - b }'; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# cpu_snapshot PID FILE: the CPU seconds of each of the process's threads, summed by thread
# name (digits and a trailing "-N" dropped: tokio-runtime-w, rdk:broker, delay-commit), as JSON.
cpu_snapshot() {
  python3 - "$1" >"$2" <<'EOF'
import json, os, re, sys
tck = os.sysconf("SC_CLK_TCK")
out = {}
for t in os.listdir(f"/proc/{sys.argv[1]}/task"):
    try:
        stat = open(f"/proc/{sys.argv[1]}/task/{t}/stat").read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    key = re.sub(r"[-#]?\d+$", "", name) or name
    out[key] = out.get(key, 0) + (int(fields[11]) + int(fields[12])) / tck
json.dump(out, sys.stdout)
EOF
}

# cpu_diff BEFORE AFTER N: the CPU spent between two cpu_snapshot files, as JSON: seconds in
# all, microseconds per one of N (messages), and microseconds per message by thread name.
cpu_diff() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
n = max(int(float(sys.argv[3])), 1)
d = {k: a[k] - b.get(k, 0) for k in a}
total = sum(d.values())
json.dump({"cpu_s": round(total, 2), "us_per_msg": round(total / n * 1e6, 1),
           "threads_us_per_msg": {k: round(v / n * 1e6, 1)
                                  for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0}},
          sys.stdout)
EOF
}

# Delay messages pending on disk (issue 16): RSS with BENCH_PENDING far-future messages, and a
# restart after kill -9 on the same store (pending.json).
bench_pending() {
  local n=${BENCH_PENDING:-10000000} d t pending=0 round=0 rss_loaded due_at start ready=0 sent=0
  local fired=0 t_ready=-1 t_sent=-1 t_fire=-1 rss_ready rss_after store fire_wait probe=
  delay_proxy pending
  t=$DELAY_OUT d=$DELAY_TOPIC
  while ((pending < n)); do
    round=$((round + 1))
    proxy_run "pending-adds-r$round" --topic "$d" --secs 30 --warmup 0 --size 100 --conns "$CONNS" \
      --method delay --delay-ms 86400000
    pending=$(metric_sum pproxy_delay_pending)
    log "pending: $pending after round $round"
  done
  # Lateness with that many pending: BENCH_PENDING_RATE (10 000) adds/s due 2 s after their
  # add, for 20 s, so as many fire per second; the lateness histogram's difference.
  scrape_delay "$OUT/logs/pending-lateness-before.json"
  cpu_snapshot "$PROXY_PID" "$OUT/logs/pending-cpu-before.json"
  proxy_run pending-steady --topic "$d" --secs 20 --warmup 0 --size 100 --conns "$CONNS" \
    --rate "${BENCH_PENDING_RATE:-10000}" --method delay --delay-ms 2000
  sleep 5
  scrape_delay "$OUT/logs/pending-lateness-after.json"
  cpu_snapshot "$PROXY_PID" "$OUT/logs/pending-cpu-after.json"
  lateness_diff "$OUT/logs/pending-lateness-before.json" "$OUT/logs/pending-lateness-after.json" \
    >"$OUT/logs/pending-lateness-only.json"
  # CPU per add + fire: each message of this phase is added and fired inside it.
  jq --argjson cpu "$(cpu_diff "$OUT/logs/pending-cpu-before.json" "$OUT/logs/pending-cpu-after.json" \
    "$(jq .fires "$OUT/logs/pending-lateness-only.json")")" '. + {proxy_cpu_add_and_fire: $cpu}' \
    "$OUT/logs/pending-lateness-only.json" >"$OUT/pending-lateness.json"
  jq -r '"pending: \(.fires) fires over 20 s with \(.pending_before) pending: lateness p50 <= \(.p50_le) s, p99 <= \(.p99_le) s, p99.9 <= \(.p999_le) s, mean \(.mean_ms) ms; \(.proxy_cpu_add_and_fire.us_per_msg) µs of pproxy CPU per add + fire"' \
    "$OUT/pending-lateness.json" >&2
  # A few thousand due 20 s from now: overdue once pproxy is back from the kill.
  proxy_run pending-due --topic "$d" --secs 1 --warmup 0 --size 100 --conns 4 --method delay --delay-ms 20000
  due_at=$((SECONDS + 20))
  pending=$(metric_sum pproxy_delay_pending)
  sleep 5
  rss_loaded=$(rss_kb "$PROXY_PID")
  store=$(du -sb "$PROXY_DIR/data" 2>/dev/null | cut -f1)
  log "pending: $pending pending, RSS $((rss_loaded / 1024)) MiB, store $((store / 1048576)) MiB; kill -9"
  kill -KILL "$PROXY_PID"
  wait "$PROXY_PID" 2>/dev/null || true
  while ((SECONDS < due_at + 1)); do sleep 0.5; done
  start=$(date +%s.%N)
  restart_proxy
  fire_wait=$((SECONDS + 120))
  while ((SECONDS < fire_wait)); do
    alive "$PROXY_PID" || die "pproxy exited after the restart: $(tail -n 5 "$PROXY_DIR/console.log")"
    if ((ready == 0)) && [[ $(http_code "http://$PROXY_ADMIN/ready") == 200 ]]; then
      ready=1
      t_ready=$(since "$start")
    fi
    # One sendSync at a time, in the background so the fire poll keeps its pace.
    if ((sent == 0)) && [[ -z $probe ]]; then
      "$PPROXY" send --addr "$PROXY_ADDR" --topic "$t" --body probe --timeout-ms 1000 \
        >"$OUT/logs/pending-probe.out" 2>&1 &
      probe=$!
    fi
    if [[ -n $probe ]] && ! alive "$probe"; then
      if wait "$probe"; then
        sent=1
        t_sent=$(since "$start")
      fi
      probe=
    fi
    if ((fired == 0)) && (($(metric_sum pproxy_delay_fired_total) > 0)); then
      fired=1
      t_fire=$(since "$start")
    fi
    ((ready == 1 && sent == 1 && fired == 1)) && break
    sleep 0.05
  done
  rss_ready=$(rss_kb "$PROXY_PID")
  sleep 10
  rss_after=$(rss_kb "$PROXY_PID")
  jq -n --argjson pending "$pending" --argjson rss_loaded "$rss_loaded" --argjson store "${store:-0}" \
    --argjson t_ready "$t_ready" --argjson t_sent "$t_sent" --argjson t_fire "$t_fire" \
    --argjson rss_ready "$rss_ready" --argjson rss_after "$rss_after" --argjson rounds "$round" \
    '{tool: "bench-pending", pending: $pending, rounds: $rounds, rss_mib_loaded: ($rss_loaded / 1024 | floor),
      store_mib: ($store / 1048576 | floor), restart_ready_s: $t_ready, restart_first_send_s: $t_sent,
      restart_first_fire_s: $t_fire, rss_mib_after_restart: ($rss_ready / 1024 | floor),
      rss_mib_10s_after_restart: ($rss_after / 1024 | floor)}' >"$OUT/pending.json"
  jq -r '"pending: \(.pending) pending: RSS \(.rss_mib_loaded) MiB, store \(.store_mib) MiB; after kill -9: ready \(.restart_ready_s) s, first sendSync 0 \(.restart_first_send_s) s, first overdue fire \(.restart_first_fire_s) s, RSS \(.rss_mib_after_restart) MiB (\(.rss_mib_10s_after_restart) MiB 10 s later)"' \
    "$OUT/pending.json" >&2
  stop_proxy
}

# Fire rate (issue 16): BENCH_FIRES (500 000) delay adds due 60 s after the first, pproxy stopped
# (SIGTERM) until they are all overdue, then started again on the same store: every one is due at
# once, and the rate at which pproxy fires them into Kafka is its maximum fire rate (fires.json).
bench_fires() {
  local n=${BENCH_FIRES:-500000} d added=0 round=0 start now count last=0 t_first='' t_last='' wait_end
  local first_count=0 rss_peak=0 rss
  delay_proxy fires
  d=$DELAY_TOPIC
  start=$SECONDS
  # Rounds of 5 s until N are pending (at most 50 s of them: every add is due 60 s after the
  # first round began, whenever its round runs).
  while ((added < n && SECONDS - start < 50)); do
    round=$((round + 1))
    proxy_run "fires-adds-r$round" --topic "$d" --secs 5 --warmup 0 --size 100 --conns "$CONNS" \
      --method delay --delay-ms $(((60 - (SECONDS - start)) * 1000))
    added=$(metric_sum pproxy_delay_pending)
  done
  log "fires: $added pending; stopping pproxy until they are all due"
  stop_pids 60 "$PROXY_PID"
  while ((SECONDS < start + 62)); do sleep 0.5; done
  restart_proxy
  pproxy_wait_ready "${PROXY_ADMIN##*:}" 60 "$PROXY_PID" "$PROXY_DIR/console.log" || die "pproxy did not restart"
  wait_end=$((SECONDS + 300))
  while ((SECONDS < wait_end)); do
    count=$(metric_sum pproxy_delay_fired_total)
    now=$(date +%s.%N)
    rss=$(rss_kb "$PROXY_PID")
    ((rss <= rss_peak)) || rss_peak=$rss
    if ((count > 0)) && [[ -z $t_first ]]; then
      t_first=$now first_count=$count
      cpu_snapshot "$PROXY_PID" "$OUT/logs/fires-cpu-first.json"
    fi
    if ((count > last)); then
      last=$count t_last=$now
      cpu_snapshot "$PROXY_PID" "$OUT/logs/fires-cpu-last.json"
    fi
    (($(metric_sum pproxy_delay_pending) > 0)) || break
    sleep 0.25
  done
  # Those fired between the last count and the empty pending read: in the total, not the rate.
  jq -n --argjson added "$added" --argjson fired "$last" --argjson first "$first_count" \
    --argjson total "$(metric_sum pproxy_delay_fired_total)" \
    --argjson t_first "${t_first:-0}" --argjson t_last "${t_last:-0}" --argjson rss "$rss_peak" \
    --argjson pending "$(metric_sum pproxy_delay_pending)" \
    --argjson cpu "$(cpu_diff "$OUT/logs/fires-cpu-first.json" "$OUT/logs/fires-cpu-last.json" $((last - first_count)))" \
    '{tool: "bench-fires", added: $added, fired: $total, pending_after: $pending, proxy_cpu: $cpu,
      seconds: (($t_last - $t_first) * 1000 | round / 1000),
      fires_per_s: (if $t_last > $t_first then (($fired - $first) / ($t_last - $t_first) | floor) else null end),
      rss_mib_peak: ($rss / 1024 | floor)}' >"$OUT/fires.json"
  jq -r '"fires: \(.fired) fired of \(.added) overdue in \(.seconds) s: \(.fires_per_s) fires/s, \(.proxy_cpu.us_per_msg) µs of pproxy CPU per fire (\(.proxy_cpu.threads_us_per_msg | to_entries | map("\(.key) \(.value)") | join(", "))), peak RSS \(.rss_mib_peak) MiB, \(.pending_after) pending after"' "$OUT/fires.json" >&2
  stop_proxy
}

# ------------------------------------------------------------------ plots

# plot_venv: the virtualenv of scripts/plot.py, outside the repository, made on first use.
PLOT_VENV=${BENCH_PLOT_VENV:-$HOME/.cache/pproxy-plot/venv}
MATPLOTLIB_VERSION=3.11.2 # pinned: another version may draw the same JSON differently
plot_venv() {
  local py=${PYTHON:-python3}
  if [[ -x $PLOT_VENV/bin/python ]] &&
    "$PLOT_VENV/bin/python" -c "import sys, matplotlib; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
    return 0
  fi
  log "preparing virtualenv $PLOT_VENV (matplotlib $MATPLOTLIB_VERSION)"
  mkdir -p "$(dirname "$PLOT_VENV")"
  [[ -x $PLOT_VENV/bin/python ]] || "$py" -m venv "$PLOT_VENV"
  "$PLOT_VENV/bin/python" -m pip install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION" >&2
}

# plots: the SVGs of docs/bench/ from the JSON summaries in $OUT (scripts/plot.py).
plots() {
  [[ ${BENCH_NO_PLOT:-0} == 1 ]] && return 0
  plot_venv || die "no virtualenv for the plots ($PLOT_VENV); BENCH_NO_PLOT=1 skips them"
  "$PLOT_VENV/bin/python" scripts/plot.py "$OUT" "${BENCH_PLOTS:-$ROOT/docs/bench}"
}

# ------------------------------------------------------------------ tables

tables() {
  python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(n):
    p = os.path.join(out, n + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
def k(v): return f"{v:,.0f}".replace(",", " ")
def us(j, key): return (j.get(key) or {}).get("us_per_msg", "-")
def cores(j, key): return (j.get(key) or {}).get("cores", "-")
def total(j):
    # CPU per stored message of everything on the path: load generator, pproxy (if any), broker.
    parts = [j.get("self_cpu"), j.get("proxy_cpu"), j.get("broker_cpu")]
    if not j.get("broker_cpu"):
        return "-"
    return f"{sum((x or {}).get('us_per_msg', 0) for x in parts):.1f}"
rows = []
for be, label in (("kafka", "Kafka"), ("rmq", "RocketMQ")):
    if not load(f"{be}-max-100-proxy-r1"):
        continue
    conns = load(f"{be}-max-100-proxy-r1")["conns"]
    print(f"\n### {label}: throughput at {conns} connections, sendSync, acknowledged\n")
    print("| body | run | direct msg/s | pproxy msg/s | ratio | pproxy CPU µs/msg (cores) | loadgen CPU µs/msg direct / via pproxy | broker CPU µs/msg d / p | all three µs/msg d / p | machine busy cores d / p | errors d/p |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in (100, 1024):
        for r in (1, 2):
            d, p = load(f"{be}-max-{size}-direct-r{r}"), load(f"{be}-max-{size}-proxy-r{r}")
            if not (d and p): continue
            pc = p["proxy_cpu"] or {}
            print(f"| {size} B | {r} | {k(d['throughput'])} | {k(p['throughput'])} | **{p['throughput']/max(d['throughput'],1):.2f}** "
                  f"| {pc.get('us_per_msg','-')} ({pc.get('cores','-')}) | {d['self_cpu']['us_per_msg']} / {p['self_cpu']['us_per_msg']} "
                  f"| {us(d, 'broker_cpu')} / {us(p, 'broker_cpu')} | {total(d)} / {total(p)} "
                  f"| {cores(d, 'machine_cpu')} / {cores(p, 'machine_cpu')} "
                  f"| {d['errors_total']} / {p['errors_total']} |")
    ab = [load(f"{be}-autobatch-100-proxy-r{r}") for r in (1, 2)]
    if all(ab):
        d = [load(f"{be}-max-100-direct-r{r}") for r in (1, 2)]
        for r, (x, y) in enumerate(zip(d, ab), 1):
            print(f"| 100 B, autoBatch topic | {r} | {k(x['throughput'])} | {k(y['throughput'])} | **{y['throughput']/max(x['throughput'],1):.2f}** "
                  f"| {y['proxy_cpu']['us_per_msg']} ({y['proxy_cpu']['cores']}) | - / {y['self_cpu']['us_per_msg']} | - / {y['errors_total']} |")
    for kind, title in (("half", f"latency at half of the lower max rate (pproxy's or direct's), {conns} connections, 100 B, fixed rate"),
                        ("lone", "one synchronous client (conns=1), 100 B, closed loop" + (", autoBatch topic" if be == "rmq" else ""))):
        print(f"\n### {label}: {title}\n")
        print("| run | rate msg/s d / p | direct p50 / p99 / p99.9 µs | pproxy p50 / p99 / p99.9 µs | added p50 | added p99 | added p50 / p99, service time |")
        print("|---|---|---|---|---|---|---|")
        for r in (1, 2):
            d, p = load(f"{be}-{kind}-direct-r{r}"), load(f"{be}-{kind}-proxy-r{r}")
            if not (d and p): continue
            dl, pl, ds, ps = d["latency_us"], p["latency_us"], d["service_us"], p["service_us"]
            print(f"| {r} | {k(d['throughput'])} / {k(p['throughput'])} | {dl['p50']} / {dl['p99']} / {dl['p999']} "
                  f"| {pl['p50']} / {pl['p99']} / {pl['p999']} | **{pl['p50']-dl['p50']} µs** | **{pl['p99']-dl['p99']} µs** "
                  f"| {ps['p50']-ds['p50']} / {ps['p99']-ds['p99']} µs |")
if load("kafka-paced-1000-proxy-r1"):
    print("\n### Kafka: paced load, 64 connections, 100 B: where the CPU goes, per stored message\n")
    print("Thread CPU in µs per message (context switches per message); direct = the load generator's own process.\n")
    print("| rate msg/s | run | service p50 / p99 µs d / p | added p50 | librdkafka broker thread d / p | delivery poll thread d / p | tokio workers d / p | pproxy all | Thrift client (loadgen) | Kafka broker d / p | machine busy / steal cores d / p |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    def th(j, side, prefix):
        for n, v in ((j.get(side) or {})).items():
            if n.startswith(prefix):
                return f"{v['us_per_msg']:.0f} ({v['switches_per_msg']:.2f})"
        return "-"
    for rate in (1000, 5000):
        for r in (1, 2):
            d, p = load(f"kafka-paced-{rate}-direct-r{r}"), load(f"kafka-paced-{rate}-proxy-r{r}")
            if not (d and p): continue
            ds, ps = d["service_us"], p["service_us"]
            print(f"| {rate} | {r} | {ds['p50']} / {ds['p99']} - {ps['p50']} / {ps['p99']} | **{ps['p50']-ds['p50']} µs** "
                  f"| {th(d,'self_threads','rdk:broker')} / {th(p,'proxy_threads','rdk:broker')} "
                  f"| {th(d,'self_threads','producer')} / {th(p,'proxy_threads','producer')} "
                  f"| {th(d,'self_threads','tokio')} / {th(p,'proxy_threads','tokio')} "
                  f"| {us(p,'proxy_cpu')} | {us(p,'self_cpu')} | {us(d,'broker_cpu')} / {us(p,'broker_cpu')} "
                  f"| {cores(d, 'machine_cpu')} / {cores(d, 'steal_cpu')} - "
                  f"{cores(p, 'machine_cpu')} / {cores(p, 'steal_cpu')} |")
if load("tls-max-plain-r1"):
    print("\n### TLS against plaintext, one pproxy, Kafka, sendSync 100 B\n")
    print("| case | run | plaintext msg/s | TLS msg/s | ratio | plaintext p50 / p99 µs | TLS p50 / p99 µs | added p50 | pproxy CPU µs/msg plain / TLS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, label in (("max", "64 connections, max rate"), ("fresh", "new connection per call, 8 senders")):
        for r in (1, 2):
            a, b = load(f"tls-{kind}-plain-r{r}"), load(f"tls-{kind}-tls-r{r}")
            if not (a and b): continue
            al, bl = a["latency_us"], b["latency_us"]
            print(f"| {label} | {r} | {k(a['throughput'])} | {k(b['throughput'])} | **{b['throughput']/max(a['throughput'],1):.2f}** "
                  f"| {al['p50']} / {al['p99']} | {bl['p50']} / {bl['p99']} | **{bl['p50']-al['p50']} µs** "
                  f"| {(a['proxy_cpu'] or {}).get('us_per_msg','-')} / {(b['proxy_cpu'] or {}).get('us_per_msg','-')} |")
if load("cluster-adds-single-r1"):
    print("\n### Durable delay adds: single-node store against cluster-mode journal, Kafka, 100 B\n")
    print("| case | run | single msg/s | cluster msg/s | ratio | single p50 / p99 µs | cluster p50 / p99 µs | pproxy CPU µs/msg single / cluster |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, label in (("adds", "64 connections, max rate"), ("lone", "1 connection")):
        for r in (1, 2):
            a, b = load(f"cluster-{kind}-single-r{r}"), load(f"cluster-{kind}-cluster-r{r}")
            if not (a and b): continue
            al, bl = a["latency_us"], b["latency_us"]
            print(f"| {label} | {r} | {k(a['throughput'])} | {k(b['throughput'])} | **{b['throughput']/max(a['throughput'],1):.2f}** "
                  f"| {al['p50']} / {al['p99']} | {bl['p50']} / {bl['p99']} "
                  f"| {(a['proxy_cpu'] or {}).get('us_per_msg','-')} / {(b['proxy_cpu'] or {}).get('us_per_msg','-')} |")
if load("delay-lateness"):
    d, a = load("delay-lateness"), load("delay-adds-proxy") or {}
    print("\n### Delay: sendDelaySync adds at max rate, then their fires, Kafka, one node, 100 B\n")
    print("| conns | adds/s | add p50 / p99 / p99.9 µs | pproxy CPU µs/add | due after | fires | fires/s | lateness p50 / p99 / p99.9 (bucket bound) | mean lateness | pending after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    al = a.get("latency_us") or {}
    def le(v): return "-" if v is None else ("∞" if v == "+Inf" else f"≤ {float(v) * 1000:g} ms")
    print(f"| {a.get('conns', '-')} | {k(d['adds_per_s'])} | {al.get('p50', '-')} / {al.get('p99', '-')} / {al.get('p999', '-')} "
          f"| {us(a, 'proxy_cpu')} | {d['delay_ms']} ms | {d['fires']} | {d['fires_per_s'] or '-'} "
          f"| {le(d['p50_le'])} / {le(d['p99_le'])} / {le(d['p999_le'])} | {d['mean_ms']} ms | {d['pending_after']:.0f} |")
for f in sorted(os.listdir(out)):
    if f.startswith("env-"):
        print(f"\n{f}:\n" + open(os.path.join(out, f)).read().rstrip())
EOF
}

# ------------------------------------------------------------------ main

build() {
  [[ ${BENCH_NO_BUILD:-0} == 1 ]] && return 0
  log "building release (pproxy, loadgen)"
  cargo build --release --workspace --bin pproxy --bin loadgen
}

mkdir -p "$OUT"
case $MODE in
  full | kafka | rocketmq)
    build
    [[ $MODE == rocketmq ]] || bench_kafka
    [[ $MODE == kafka ]] || bench_rocketmq
    tables | tee "$OUT/tables-$MODE.md"
    plots
    ;;
  kafka-max)
    build
    bench_kafka max
    tables | tee "$OUT/tables-$MODE.md"
    plots
    ;;
  sweep)
    build
    bench_sweep
    plots
    ;;
  delay)
    build
    bench_delay
    tables | tee "$OUT/tables-delay.md"
    plots
    ;;
  all)
    start=$SECONDS
    build
    built=$SECONDS
    bench_kafka
    bench_rocketmq
    bench_sweep
    bench_delay
    # 1M pending here (the lateness target's figure); the 10M RSS figure is `pending` alone.
    BENCH_PENDING=${BENCH_PENDING:-1000000} bench_pending
    bench_fires
    tables | tee "$OUT/tables-all.md"
    plots
    log "all: $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s wall time, $((built - start)) s of it the build"
    ;;
  smoke)
    build
    bench_smoke
    ;;
  pending)
    build
    bench_pending
    plots
    ;;
  fires)
    build
    bench_fires
    plots
    ;;
  perf)
    build
    bench_perf
    ;;
  tls)
    build
    bench_tls
    tables | tee "$OUT/tables-tls.md"
    plots
    ;;
  cluster)
    build
    bench_cluster
    tables | tee "$OUT/tables-cluster.md"
    plots
    ;;
  table)
    tables
    plots
    ;;
  plot)
    plots
    ;;
  *) die "usage: $0 [full|kafka|kafka-max|rocketmq|smoke|tls|cluster|perf|sweep|delay|all|table|plot]" ;;
esac
