#!/usr/bin/env bash
# Soak version of broker_outage::rocketmq_broker_outage_under_load (issue 20 part 5): the RocketMQ
# broker stopped for 30 s under load and started again, N times, each run a separate process.
#   scripts/soak-rocketmq-restart.sh [runs=15]
# Stops and starts the stack's RocketMQ broker (it must own it). Logs: target/soak-rocketmq/
# (run-N.log, the broker's log of each run, summary.txt with one line per run).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
scripts/stack.sh up rocketmq
eval "$(scripts/stack.sh env)"
# A soak that skipped would pass without running: no skips.
export PPROXY_TEST_ROCKETMQ_NAMESRV PPROXY_REQUIRE_STACK=1
bin=$(cargo test --locked --test faults --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "faults" and m.get("executable"):
        print(m["executable"])')
out=${CARGO_TARGET_DIR:-target}/soak-rocketmq
mkdir -p "$out"
: >"$out/summary.txt"
failed=0
for i in $(seq 1 "$runs"); do
  rc=0
  "$bin" --exact broker_outage::rocketmq_broker_outage_under_load --nocapture >"$out/run-$i.log" 2>&1 || rc=$?
  cp "${PPROXY_STACK_HOME:-$HOME/.cache/pproxy-stack}/logs/broker.log" "$out/broker-$i.log" 2>/dev/null || true
  ((rc == 0)) || failed=$((failed + 1))
  echo "run $i exit $rc: $(grep -h '^rocketmq:\|panicked' "$out/run-$i.log" | tr '\n' ' ')" | tee -a "$out/summary.txt"
done
echo "$runs runs, $failed failed (logs in $out)" | tee -a "$out/summary.txt"
((failed == 0))
