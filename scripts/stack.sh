#!/usr/bin/env bash
# Real Apache Kafka, RocketMQ and ZooKeeper servers on 127.0.0.1 for the
# integration tests.
#
#   scripts/stack.sh up     [kafka|rocketmq|zookeeper|all]   install if needed, start, wait until healthy
#   scripts/stack.sh down   [kafka|rocketmq|zookeeper|all]   stop what `up` started (data is kept)
#   scripts/stack.sh down   rocketmq-broker                   stop the RocketMQ broker only (`up rocketmq` restarts it)
#   scripts/stack.sh status                                   one line per server
#   scripts/stack.sh pids kafka|rocketmq|zookeeper            pids of its running servers
#   scripts/stack.sh env                                      shell exports for the tests
#   scripts/stack.sh kafka-topic    NAME PARTITIONS           create a topic (idempotent, waits for leaders)
#   scripts/stack.sh rocketmq-topic NAME [QUEUES]             create/update a topic (default 4 queues, waits for the route)
#   scripts/stack.sh rocketmq-broker-config KEY VALUE         change one setting of the running broker (mqadmin updateBrokerConfig)
#   scripts/stack.sh reset  [kafka|rocketmq|zookeeper|all]   stop and wipe the data dirs
#
# The servers come from Maven Central as jars (the only place this machine can
# download them from), resolved by the poms in scripts/stack/ into a Maven
# repository of their own under the cache dir, so the repo stays clean and a
# second run downloads nothing:
#
#   ${PPROXY_STACK_HOME:-$HOME/.cache/pproxy-stack}/
#     m2/    Maven repository holding the jars     lib/   classpath files (+ pom hash)
#     conf/  generated configs                     data/  server state (kept by down)
#     logs/  one log per server process            run/   pid files and a lock
#
# Environment: PPROXY_STACK_HOME, PPROXY_STACK_JAVA (default: java on PATH,
# must be 17+), PPROXY_STACK_TIMEOUT (seconds to wait for health, default 120),
# PPROXY_STACK_JVM_OPTS (extra options for every server JVM, default
# -XX:TieredStopAtLevel=1; set it empty for full JIT).
#
# Fixed loopback ports: Kafka 9092 (controller 9093), RocketMQ name server 9876
# and broker 10911 (plus its "fast" port 10909), ZooKeeper 2181. The RocketMQ
# broker's HA port 10912 has no bind-address setting and listens on all
# interfaces; no slave ever connects to it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=stack
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
STACK_SRC=$HERE/stack
STACK_HOME=${PPROXY_STACK_HOME:-$HOME/.cache/pproxy-stack}
JAVA=${PPROXY_STACK_JAVA:-java}
TIMEOUT=${PPROXY_STACK_TIMEOUT:-120}

M2=$STACK_HOME/m2
LIB=$STACK_HOME/lib
CONF=$STACK_HOME/conf
DATA=$STACK_HOME/data
LOGS=$STACK_HOME/logs
RUN=$STACK_HOME/run

KAFKA_ADDR=127.0.0.1:9092
KAFKA_CONTROLLER_ADDR=127.0.0.1:9093
NAMESRV_ADDR=127.0.0.1:9876
BROKER_ADDR=127.0.0.1:10911
BROKER_NAME=broker-a
CLUSTER_NAME=DefaultCluster
ZK_ADDR=127.0.0.1:2181

probe() { python3 "$STACK_SRC/probe.py" "$@"; }

# ------------------------------------------------------------------ install

# install COMPONENT: resolve scripts/stack/COMPONENT/pom.xml into $M2 and write
# the runtime classpath to $LIB/COMPONENT.classpath. Skipped when the pom is
# unchanged since the last install and every jar is still there.
install() {
  local comp=$1 pom=$STACK_SRC/$1/pom.xml
  local cpfile=$LIB/$comp.classpath stamp=$LIB/$comp.pom.sha256
  local want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ -f $cpfile && -f $stamp && $(cat "$stamp") == "$want" ]] && classpath_complete "$cpfile"; then
    return 0
  fi
  log "$comp: resolving jars from Maven Central (first run only)"
  mkdir -p "$M2" "$LIB"
  local out
  # -Dstyle.color=never and a captured log: mvn is noisy even with -q, and
  # its output only matters when it fails.
  if ! out=$(mvn -q -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$M2" \
      dependency:build-classpath -Dmdep.outputFile="$cpfile.tmp" 2>&1); then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "$comp: mvn could not resolve $pom"
  fi
  mv "$cpfile.tmp" "$cpfile"
  classpath_complete "$cpfile" || die "$comp: classpath lists missing jars"
  printf '%s\n' "$want" >"$stamp"
}

classpath_complete() {
  local jar jars
  IFS=: read -r -a jars <"$1"
  ((${#jars[@]} > 0)) || return 1
  for jar in "${jars[@]}"; do
    [[ -f $jar ]] || return 1
  done
}

classpath() { cat "$LIB/$1.classpath"; }

check_java() {
  command -v "$JAVA" >/dev/null || die "no java ($JAVA); set PPROXY_STACK_JAVA"
  command -v python3 >/dev/null || die "python3 is needed for the health probes"
  local spec
  # Kafka 4 brokers need Java 17.
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  ((${spec%%.*} >= 17)) || die "$JAVA is Java $spec; Java 17+ is needed"
}

# ---------------------------------------------------------------- processes
# Server processes: kafka, namesrv, broker, zookeeper. Each JVM carries
# -Dpproxy.stack=<proc>@<STACK_HOME> so a pid is only trusted (and killed) if
# it is really ours, and a server whose pid file was lost is found again.

marker() { printf -- '-Dpproxy.stack=%s@%s' "$1" "$STACK_HOME"; }

# has_marker PID MARKER: the marker is PID's first argument (no pipe: with
# pipefail, grep -q closing early on a long classpath would make tr fail).
has_marker() {
  local -a argv=()
  mapfile -d '' -t argv 2>/dev/null <"/proc/$1/cmdline" || return 1
  [[ ${#argv[@]} -gt 1 && ${argv[1]} == "$2" ]]
}

# pid_of PROC: print the pid of our running PROC, or fail.
pid_of() {
  local proc=$1 pid m f
  m=$(marker "$proc")
  if [[ -f $RUN/$proc.pid ]]; then
    pid=$(cat "$RUN/$proc.pid")
    if [[ $pid =~ ^[0-9]+$ ]] && has_marker "$pid" "$m"; then
      echo "$pid"
      return 0
    fi
    rm -f "$RUN/$proc.pid"
  fi
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    if has_marker "$pid" "$m"; then
      echo "$pid" >"$RUN/$proc.pid"
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# launch PROC ADDR JAVA_ARGS...: start one detached JVM with stdout/stderr in
# logs/PROC.log (the previous log is kept as PROC.log.1).
launch() {
  local proc=$1 addr=$2
  shift 2
  if port_busy "$addr"; then
    die "$proc: $addr is already in use by a process this script did not start"
  fi
  [[ -f $LOGS/$proc.log ]] && mv -f "$LOGS/$proc.log" "$LOGS/$proc.log.1"
  printf '=== %s started by scripts/stack.sh at %s\n' "$proc" "$(date -Is)" >"$LOGS/$proc.log"
  # setsid: the server must outlive this script and must not get the SIGINT
  # of a Ctrl-C in the terminal or CI step that ran `up`.
  local -a extra
  # C1 only by default: four JVMs warming up on two cores start ~30% sooner
  # and burn ~40% less CPU; test traffic never needs C2's peak speed.
  read -r -a extra <<<"${PPROXY_STACK_JVM_OPTS--XX:TieredStopAtLevel=1}"
  # 9>&-: the server must not inherit (and hold forever) the lock of with_lock.
  setsid "$JAVA" "$(marker "$proc")" "${extra[@]}" "$@" >>"$LOGS/$proc.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/$proc.pid"
  log "$proc: started (pid $!, log $LOGS/$proc.log)"
}

# show_log PROC: the first errors and the end of a server's log, for failures.
show_log() {
  local f=$LOGS/$1.log
  if grep -qE 'ERROR|Exception' "$f"; then
    log "$1: first errors in $f:"
    grep -m 8 -E 'ERROR|Exception' "$f" >&2 || true
  fi
  log "$1: last lines of $f:"
  tail -n 30 "$f" >&2
}

# wait_healthy PROC CHECK_FUNCTION: poll until the check passes, the process
# dies, or $TIMEOUT seconds pass; on failure show the end of the log.
wait_healthy() {
  local proc=$1 check=$2 start=$SECONDS pid out
  while :; do
    if out=$("$check" 2>&1); then
      log "$proc: healthy after $((SECONDS - start))s ($out)"
      return 0
    fi
    if ! pid=$(pid_of "$proc"); then
      log "$proc: exited while starting"
      show_log "$proc"
      exit 1
    fi
    if ((SECONDS - start >= TIMEOUT)); then
      log "$proc: not healthy after ${TIMEOUT}s (pid $pid, last check: ${out//$'\n'/ })"
      show_log "$proc"
      exit 1
    fi
    sleep 0.5
  done
}

# stop PROC: SIGTERM (the servers flush and deregister on it; the RocketMQ
# broker takes ~12 s), then SIGKILL if it has not exited within 60 s.
stop() {
  local proc=$1 pid
  if ! pid=$(pid_of "$proc"); then
    log "$proc: not running"
    return 0
  fi
  log "$proc: stopping (pid $pid)"
  stop_pids 60 "$pid"
  rm -f "$RUN/$proc.pid"
  log "$proc: stopped"
}

# -------------------------------------------------------------------- Kafka

kafka_config() {
  mkdir -p "$CONF/kafka" "$DATA/kafka"
  cat >"$CONF/kafka/server.properties" <<EOF
# Generated by scripts/stack.sh: single-node KRaft, broker and controller in
# one process, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_CONTROLLER_ADDR
listeners=PLAINTEXT://$KAFKA_ADDR,CONTROLLER://$KAFKA_CONTROLLER_ADDR
advertised.listeners=PLAINTEXT://$KAFKA_ADDR
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA/kafka
# Tests create their topics explicitly (kafka-topic); a typo must fail.
auto.create.topics.enable=false
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
# There is one broker: every internal topic has one replica, and few
# partitions so the first consumer group / transaction does not wait for 50.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups in tests should not sit out the default 3 s join delay.
group.initial.rebalance.delay.ms=0
# pproxy's delay cluster mode (tests/stack/cluster.rs) uses short sessions to fail over
# within seconds; the broker default floor is 6 s.
group.min.session.timeout.ms=1000
# Two cores shared with the build and the other servers.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# Keep the disk footprint small.
log.segment.bytes=67108864
log.retention.hours=24
EOF
  cat >"$CONF/kafka/log4j2.properties" <<'EOF'
# Generated by scripts/stack.sh: everything to stdout, which goes to logs/kafka.log.
appender.out.type=Console
appender.out.name=STDOUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.state.name=state.change.logger
logger.state.level=WARN
EOF
  cat >"$CONF/kafka/tools-log4j2.properties" <<'EOF'
# Generated by scripts/stack.sh: command-line tools only report warnings.
appender.err.type=Console
appender.err.name=STDERR
appender.err.target=SYSTEM_ERR
appender.err.layout.type=PatternLayout
appender.err.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.err.ref=STDERR
EOF
}

# kafka_tool CLASS ARGS...: run a Kafka command-line class from the jars.
kafka_tool() {
  local cls=$1
  shift
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CONF/kafka/tools-log4j2.properties" \
    -cp "$(classpath kafka)" "$cls" "$@"
}

kafka_check() { probe kafka-ready "$KAFKA_ADDR"; }

kafka_start() {
  kafka_config
  if pid_of kafka >/dev/null; then
    log "kafka: already running"
  else
    if [[ ! -f $DATA/kafka/meta.properties ]]; then
      # KRaft needs its storage formatted once with a cluster id. The "=" form matters:
      # a random id may start with "-", which the tool would read as an option.
      local cluster_id
      cluster_id=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
      log "kafka: formatting storage (cluster id $cluster_id)"
      kafka_tool kafka.tools.StorageTool format --cluster-id="$cluster_id" \
        -c "$CONF/kafka/server.properties" --ignore-formatted >"$LOGS/kafka-format.log" 2>&1 ||
        { tail -n 40 "$LOGS/kafka-format.log" >&2; die "kafka: storage format failed"; }
    fi
    launch kafka "$KAFKA_ADDR" \
      -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$CONF/kafka/log4j2.properties" \
      -Dkafka.logs.dir="$LOGS" \
      -cp "$(classpath kafka)" kafka.Kafka "$CONF/kafka/server.properties"
  fi
}

kafka_wait() { wait_healthy kafka kafka_check; }

# kafka_partitions TOPIC: "<partitions> <with a leader>"; "-1 0" if the topic
# does not exist, "-2 0" if the broker did not answer.
kafka_partitions() {
  probe kafka-partitions "$KAFKA_ADDR" "$1" 2>/dev/null || echo "-2 0"
}

kafka_topic() {
  local name=$1 partitions=$2 have leaders start=$SECONDS
  [[ $partitions =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive number"
  install kafka
  kafka_config
  kafka_check >/dev/null || die "kafka is not running (scripts/stack.sh up kafka)"
  read -r have leaders <<<"$(kafka_partitions "$name")"
  ((have != -2)) || die "kafka: no metadata answer from $KAFKA_ADDR"
  if ((have < 0)); then
    log "kafka: creating topic $name ($partitions partitions)"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_ADDR" \
      --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 >&2
  elif ((have < partitions)); then
    log "kafka: topic $name has $have partitions, raising to $partitions"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_ADDR" \
      --alter --topic "$name" --partitions "$partitions" >&2
  elif ((have > partitions)); then
    log "kafka: topic $name already has $have partitions (> $partitions; Kafka cannot shrink a topic)"
    partitions=$have
  fi
  # Creation is asynchronous: return only once every partition has a leader,
  # so a test can produce right away.
  while :; do
    read -r have leaders <<<"$(kafka_partitions "$name")"
    ((have >= partitions && leaders == have)) && break
    ((SECONDS - start < TIMEOUT)) || die "kafka: topic $name not ready ($have partitions, $leaders with a leader)"
    sleep 0.2
  done
  log "kafka: topic $name ready ($have partitions)"
}

# ----------------------------------------------------------------- RocketMQ

rocketmq_config() {
  mkdir -p "$CONF/rocketmq" "$DATA/rocketmq/home" "$DATA/rocketmq/store"
  cat >"$CONF/rocketmq/namesrv.properties" <<EOF
# Generated by scripts/stack.sh.
listenPort=${NAMESRV_ADDR##*:}
bindAddress=${NAMESRV_ADDR%:*}
rocketmqHome=$DATA/rocketmq/home
kvConfigPath=$DATA/rocketmq/namesrv/kvConfig.json
EOF
  # The broker rewrites this file (with every setting) when its config is
  # updated at run time, as broker_start_check does; `up` regenerates it.
  cat >"$CONF/rocketmq/broker.conf" <<EOF
# Generated by scripts/stack.sh: one master broker, loopback only.
brokerClusterName=$CLUSTER_NAME
brokerName=$BROKER_NAME
brokerId=0
# One broker has no slave to wait for (SYNC_MASTER would answer every put
# SLAVE_NOT_AVAILABLE); SYNC_FLUSH: a put is answered only once the commit log
# is on disk, as docs/RELIABILITY.md asks of a zero-loss deployment, so the
# tests run the setting users are told to run.
brokerRole=ASYNC_MASTER
flushDiskType=SYNC_FLUSH
namesrvAddr=$NAMESRV_ADDR
brokerIP1=${BROKER_ADDR%:*}
bindAddress=${BROKER_ADDR%:*}
listenPort=${BROKER_ADDR##*:}
rocketmqHome=$DATA/rocketmq/home
# Tests create their topics explicitly (rocketmq-topic); a typo must fail.
autoCreateTopicEnable=false
autoCreateSubscriptionGroup=true
storePathRootDir=$DATA/rocketmq/store
storePathCommitLog=$DATA/rocketmq/store/commitlog
# The defaults (1 GiB commit log files, 6 MB consume queue files, a 420 MB
# index file) are sized for production; these keep the store in the tens of MB.
mappedFileSizeCommitLog=67108864
mappedFileSizeConsumeQueue=600000
maxHashSlotNum=50000
maxIndexNum=200000
# The 5.x timer wheel (arbitrary delivery times) polls in several threads and
# costs ~5% of a core while idle; delay-level messages do not need it and
# pproxy's delays go through its own topics.
timerWheelEnable=false
fileReservedTime=24
# Disk thresholds, in % of the store's file system as df shows it. RocketMQ
# 5.3.3 caps the two below at 90 and 85 whatever is set here or in
# -Drocketmq.broker.diskSpace*Ratio (DefaultMessageStore.CleanCommitLogService):
# above 90 % the broker marks the disk full and answers every put
# SERVICE_NOT_AVAILABLE (14); above 85 % it deletes commit-log files before
# fileReservedTime. They are set to those caps so this file says what runs;
# "up rocketmq" warns when the disk is near them.
diskMaxUsedSpaceRatio=95
diskSpaceWarningLevelRatio=90
diskSpaceCleanForciblyRatio=85
EOF
  cat >"$CONF/rocketmq/logback.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/stack.sh: everything to stdout, which goes to
     logs/namesrv.log or logs/broker.log (instead of ~/logs/rocketmqlogs). -->
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{yyyy-MM-dd HH:mm:ss.SSS} %p %t %logger{0} - %m%n</pattern></encoder>
  </appender>
  <!-- Periodic statistics, not useful in test logs. -->
  <logger name="RocketmqStats" level="WARN"/>
  <logger name="RocketmqWaterMark" level="WARN"/>
  <logger name="RocketmqCommercial" level="WARN"/>
  <!-- With the timer wheel off, every revive thread warns once a second that it skips. -->
  <logger name="RocketmqPop" level="ERROR"/>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
  cat >"$CONF/rocketmq/tools-logback.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/stack.sh: mqadmin prints its results on stdout;
     its client logging goes to logs/mqadmin.log. -->
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$LOGS/mqadmin.log</file>
    <encoder><pattern>%d{yyyy-MM-dd HH:mm:ss.SSS} %p %t %logger{0} - %m%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

# JVM options shared by the RocketMQ processes. No --add-opens: 5.3 frees its
# mapped files through Netty (Unsafe.invokeCleaner), and a broker started
# without them stores, serves and shuts down cleanly on JDK 17.
rocketmq_jvm_common() {
  printf '%s\n' \
    -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow -XX:-UseLargePages \
    -Djava.awt.headless=true \
    "-Duser.home=$DATA/rocketmq/home" \
    "-Drocketmq.home.dir=$DATA/rocketmq/home" \
    "-Drmq.logback.configurationFile=$CONF/rocketmq/logback.xml"
}

rocketmq_check() { probe rocketmq-ready "$NAMESRV_ADDR" "$BROKER_NAME" "$BROKER_ADDR"; }

# While starting: a fresh broker often misses its first registration (see
# probe.py rocketmq-register) and would only show up on the name server 10 s
# later; once it answers on its own port, ask it to register.
broker_start_check() {
  rocketmq_check && return 0
  probe rocketmq-register "$BROKER_ADDR" >/dev/null 2>&1 || true
  return 1
}
# The name server answers a cluster-info request (the broker may not have
# registered yet).
namesrv_check() { probe rocketmq-namesrv "$NAMESRV_ADDR"; }

# rocketmq_disk_note: warn when the store's disk is past the broker's caps
# (see broker.conf): the symptom is otherwise "every put fails" with nothing
# in the test output to say why.
rocketmq_disk_note() {
  local used
  used=$(df --output=pcent "$DATA/rocketmq/store" 2>/dev/null | tail -n 1 | tr -dc 0-9) || return 0
  [[ -n $used ]] || return 0
  if ((used > 90)); then
    log "rocketmq: WARNING: the store's disk is ${used}% used: the broker refuses every put above 90% (RocketMQ 5.3.3 caps diskSpaceWarningLevelRatio there) and pproxy answers 10 (its log names the cause); free disk space"
  elif ((used > 85)); then
    log "rocketmq: WARNING: the store's disk is ${used}% used: above 85% the broker deletes commit-log files early, above 90% it refuses every put"
  fi
}

# rocketmq_broker_config KEY VALUE: one setting of the running broker, at
# run time (the broker also writes it into its broker.conf; `up` regenerates
# that file).
rocketmq_broker_config() {
  local out rc=0
  rocketmq_check >/dev/null || die "rocketmq is not running (scripts/stack.sh up rocketmq)"
  out=$(ROCKETMQ_HOME=$DATA/rocketmq/home "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1     "-Duser.home=$DATA/rocketmq/home"     "-Drmq.logback.configurationFile=$CONF/rocketmq/tools-logback.xml"     -cp "$(classpath rocketmq)" org.apache.rocketmq.tools.command.MQAdminStartup     updateBrokerConfig -n "$NAMESRV_ADDR" -b "$BROKER_ADDR" -k "$1" -v "$2" 2>&1) || rc=$?
  # MQAdminStartup prints errors and still exits 0: it says "update broker config success".
  if ((rc != 0)) || ! grep -q 'success' <<<"$out"; then
    printf '%s\n' "$out" >&2
    die "rocketmq: mqadmin updateBrokerConfig $1=$2 failed (exit $rc)"
  fi
  log "rocketmq: broker $BROKER_ADDR: $1=$2"
}

rocketmq_start() {
  rocketmq_config
  rocketmq_disk_note
  local -a common
  mapfile -t common < <(rocketmq_jvm_common)
  export ROCKETMQ_HOME=$DATA/rocketmq/home
  if pid_of namesrv >/dev/null; then
    log "namesrv: already running"
  else
    launch namesrv "$NAMESRV_ADDR" \
      -Xms256m -Xmx256m -Xmn128m -XX:MaxDirectMemorySize=128m "${common[@]}" \
      -cp "$(classpath rocketmq)" org.apache.rocketmq.namesrv.NamesrvStartup \
      -c "$CONF/rocketmq/namesrv.properties"
  fi
  # The broker need not wait for the name server: it keeps retrying to
  # register, and broker_start_check makes it register as soon as it can.
  if pid_of broker >/dev/null; then
    log "broker: already running"
  else
    launch broker "$BROKER_ADDR" \
      -Xms1g -Xmx1g -Xmn512m -XX:MaxDirectMemorySize=1g "${common[@]}" \
      -cp "$(classpath rocketmq)" org.apache.rocketmq.broker.BrokerStartup \
      -c "$CONF/rocketmq/broker.conf"
  fi
}

rocketmq_wait() {
  wait_healthy namesrv namesrv_check
  wait_healthy broker broker_start_check
}

# rocketmq_route TOPIC: "<write queues> <read queues>" on the name server;
# "-1 -1" if there is no route, "-2 -2" if the name server did not answer.
rocketmq_route() {
  probe rocketmq-route "$NAMESRV_ADDR" "$1" 2>/dev/null || echo "-2 -2"
}

rocketmq_topic() {
  local name=$1 queues=${2:-4} w r start=$SECONDS mq='' rc out
  [[ $queues =~ ^[1-9][0-9]*$ ]] || die "QUEUES must be a positive number"
  install rocketmq
  rocketmq_config
  rocketmq_check >/dev/null || die "rocketmq is not running (scripts/stack.sh up rocketmq)"
  read -r w r <<<"$(rocketmq_route "$name")"
  ((w != -2)) || die "rocketmq: no answer from the name server $NAMESRV_ADDR"
  out=$RUN/mqadmin.$$.out
  if ((w != queues || r != queues)); then
    log "rocketmq: updating topic $name ($queues read/write queues)"
    # In the background: mqadmin is done after ~1 s but then spends ~5 s
    # shutting its client down; once the route shows the new topic it is
    # stopped instead of waited for.
    ROCKETMQ_HOME=$DATA/rocketmq/home "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 \
      "-Duser.home=$DATA/rocketmq/home" \
      "-Drmq.logback.configurationFile=$CONF/rocketmq/tools-logback.xml" \
      -cp "$(classpath rocketmq)" org.apache.rocketmq.tools.command.MQAdminStartup \
      updateTopic -n "$NAMESRV_ADDR" -c "$CLUSTER_NAME" -t "$name" \
      -r "$queues" -w "$queues" >"$out" 2>&1 &
    mq=$!
  fi
  # The broker pushes the new route to the name server asynchronously: return
  # only once clients can look it up.
  while :; do
    read -r w r <<<"$(rocketmq_route "$name")"
    ((w == queues && r == queues)) && break
    if [[ -n $mq ]] && ! alive "$mq"; then
      rc=0
      wait "$mq" || rc=$?
      # MQAdminStartup prints errors and still exits 0: look for its
      # "create topic to <broker> success." line too.
      if ((rc != 0)) || ! grep -q 'success' "$out"; then
        cat "$out" >&2
        rm -f "$out"
        die "rocketmq: mqadmin updateTopic failed (exit $rc)"
      fi
      mq=''
    fi
    if ((SECONDS - start >= TIMEOUT)); then
      [[ -z $mq ]] || kill -TERM "$mq" 2>/dev/null || true
      [[ ! -f $out ]] || cat "$out" >&2
      rm -f "$out"
      die "rocketmq: no route for $name on $NAMESRV_ADDR (write $w, read $r)"
    fi
    sleep 0.2
  done
  if [[ -n $mq ]]; then
    kill -TERM "$mq" 2>/dev/null || true
    wait "$mq" || true
  fi
  rm -f "$out"
  log "rocketmq: topic $name ready ($queues queues)"
}

# ---------------------------------------------------------------- ZooKeeper

zookeeper_config() {
  mkdir -p "$CONF/zookeeper" "$DATA/zookeeper"
  cat >"$CONF/zookeeper/zoo.cfg" <<EOF
# Generated by scripts/stack.sh: standalone, loopback only.
tickTime=2000
dataDir=$DATA/zookeeper
clientPort=${ZK_ADDR##*:}
clientPortAddress=${ZK_ADDR%:*}
# Tests may open many sessions from one address.
maxClientCnxns=0
# The health check uses srvr; the AdminServer would take port 8080.
4lw.commands.whitelist=srvr,stat,ruok,mntr,conf
admin.enableServer=false
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
  cat >"$CONF/zookeeper/logback.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/stack.sh: to stdout, which goes to logs/zookeeper.log. -->
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
  </appender>
  <!-- One INFO line per connection, i.e. per health probe. -->
  <logger name="org.apache.zookeeper.server.NIOServerCnxn" level="WARN"/>
  <logger name="org.apache.zookeeper.server.NIOServerCnxnFactory" level="WARN"/>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

zookeeper_check() {
  local out
  out=$(probe zk-srvr "$ZK_ADDR") || return 1
  grep -m1 '^Zookeeper version' <<<"$out" | cut -d, -f1
}

zookeeper_start() {
  zookeeper_config
  if pid_of zookeeper >/dev/null; then
    log "zookeeper: already running"
  else
    launch zookeeper "$ZK_ADDR" \
      -Xms128m -Xmx256m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlogback.configurationFile="$CONF/zookeeper/logback.xml" \
      -Dzookeeper.jmx.log4j.disable=true \
      -cp "$(classpath zookeeper)" org.apache.zookeeper.server.ZooKeeperServerMain \
      "$CONF/zookeeper/zoo.cfg"
  fi
}

zookeeper_wait() { wait_healthy zookeeper zookeeper_check; }

# ----------------------------------------------------------------- commands

# components WHICH: expand the optional component argument.
components() {
  case ${1:-all} in
    all) echo kafka rocketmq zookeeper ;;
    kafka | rocketmq | zookeeper) echo "$1" ;;
    *) die "unknown component '$1' (kafka|rocketmq|zookeeper|all)" ;;
  esac
}

# Processes of a component, in start order.
procs_of() {
  case $1 in
    kafka) echo kafka ;;
    rocketmq) echo namesrv broker ;;
    zookeeper) echo zookeeper ;;
  esac
}

status_line() {
  local proc=$1 addr=$2 check=$3 pid out
  if pid=$(pid_of "$proc"); then
    if out=$("$check" 2>&1); then
      printf '%-10s running  pid %-8s %-16s healthy\n' "$proc" "$pid" "$addr"
    else
      printf '%-10s running  pid %-8s %-16s NOT healthy: %s\n' "$proc" "$pid" "$addr" "${out//$'\n'/ }"
    fi
  else
    printf '%-10s stopped\n' "$proc"
  fi
}

with_lock() {
  mkdir -p "$RUN" "$LOGS"
  # One `up`/`down` at a time per cache dir (parallel test jobs may all call up).
  exec 9>"$RUN/lock"
  flock -n 9 || { log "waiting for another scripts/stack.sh to finish"; flock 9; }
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up)
      [[ $# -le 1 ]] || die "usage: $0 up [kafka|rocketmq|zookeeper|all]"
      local comps c start=$SECONDS
      comps=$(components "${1:-all}")
      check_java
      with_lock
      # Resolve everything first, then start every JVM, then wait for each:
      # the servers do not depend on each other to start, and their start-ups
      # overlap instead of adding up.
      for c in $comps; do install "$c"; done
      for c in $comps; do "${c}_start"; done
      for c in $comps; do "${c}_wait"; done
      log "up ($comps) done in $((SECONDS - start))s"
      ;;
    down | reset)
      [[ $# -le 1 ]] || die "usage: $0 $cmd [kafka|rocketmq|zookeeper|all]"
      local comps c p procs
      if [[ ${1:-} == rocketmq-broker && $cmd == down ]]; then
        # The broker alone (outage tests): the name server keeps answering.
        with_lock
        stop broker
        return 0
      fi
      comps=$(components "${1:-all}")
      with_lock
      for c in $comps; do
        # Reverse start order: the broker deregisters from the name server.
        procs=$(procs_of "$c" | tr ' ' '\n' | tac)
        for p in $procs; do stop "$p"; done
        if [[ $cmd == reset ]]; then
          rm -rf "${DATA:?}/$c"
          [[ $c == kafka ]] && rm -f "$LOGS/kafka-format.log"
          log "$c: data wiped"
        fi
      done
      ;;
    status)
      mkdir -p "$RUN"
      status_line kafka "$KAFKA_ADDR" kafka_check
      status_line namesrv "$NAMESRV_ADDR" namesrv_check
      status_line broker "$BROKER_ADDR" rocketmq_check
      status_line zookeeper "$ZK_ADDR" zookeeper_check
      ;;
    pids)
      # The running server processes of a component, one per line (for CPU accounting).
      [[ $# -eq 1 ]] || die "usage: $0 pids kafka|rocketmq|zookeeper"
      local p
      for p in $(procs_of "$1"); do pid_of "$p" || true; done
      ;;
    env)
      echo "export PPROXY_TEST_KAFKA=$KAFKA_ADDR"
      echo "export PPROXY_TEST_ROCKETMQ_NAMESRV=$NAMESRV_ADDR"
      echo "export PPROXY_TEST_ZK=$ZK_ADDR"
      ;;
    kafka-topic)
      [[ $# -eq 2 ]] || die "usage: $0 kafka-topic NAME PARTITIONS"
      check_java
      kafka_topic "$1" "$2"
      ;;
    rocketmq-topic)
      [[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 rocketmq-topic NAME [QUEUES]"
      check_java
      rocketmq_topic "$1" "${2:-4}"
      ;;
    rocketmq-broker-config)
      [[ $# -eq 2 ]] || die "usage: $0 rocketmq-broker-config KEY VALUE"
      check_java
      install rocketmq
      rocketmq_broker_config "$1" "$2"
      ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
