#!/usr/bin/env bash
# Soak version of tests/faults/delay_crash.rs: many SIGKILL/restart cycles against the real Kafka.
#   scripts/soak-delay-crash.sh [iterations=50] [seed]
# Starts Kafka through scripts/stack.sh if it is not running (and stops it again if it did).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-50}
started=0
# Not `status | grep -q`: with pipefail, grep -q leaving early makes `status` die of SIGPIPE and
# the check fail although Kafka is healthy (the script then stopped a Kafka it had not started).
status=$(scripts/stack.sh status)
if ! grep -q '^kafka .*healthy' <<<"$status"; then
  scripts/stack.sh up kafka
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then scripts/stack.sh down kafka; fi; }
trap cleanup EXIT
export PPROXY_TEST_KAFKA=127.0.0.1:9092 PPROXY_CRASH_ITERS=$iters
[ -n "${2:-}" ] && export PPROXY_CRASH_SEED=$2
cargo test --locked --test faults delay_crash:: -- --nocapture
