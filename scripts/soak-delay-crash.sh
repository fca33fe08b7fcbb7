#!/usr/bin/env bash
# Soak version of tests/faults/delay_crash.rs: many SIGKILL/restart cycles against the real Kafka.
#   scripts/soak-delay-crash.sh [iterations=50] [seed]
# Starts Kafka through scripts/stack.sh if it is not running (and stops it again if it did).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME=soak
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
iters=${1:-50}
stack_ensure kafka
cleanup() { if [ "$STACK_STARTED" = 1 ]; then scripts/stack.sh down kafka; fi; }
trap cleanup EXIT
# A soak that skipped would pass without running: no skips.
export PPROXY_TEST_KAFKA=127.0.0.1:9092 PPROXY_CRASH_ITERS=$iters PPROXY_REQUIRE_STACK=1
[ -n "${2:-}" ] && export PPROXY_CRASH_SEED=$2
cargo test --locked --test faults delay_crash:: -- --nocapture
