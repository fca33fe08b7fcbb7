#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, starts the real Apache
# Kafka, RocketMQ and ZooKeeper servers on 127.0.0.1 (scripts/stack.sh), runs the Rust unit and
# integration tests and the Python wire tests, and stops the servers again, pass or fail; then a
# short libFuzzer smoke over the fuzz targets (no sanitizer, dev build: docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --tests
echo "test: building" >&2
cargo build --locked --workspace --all-targets

# On failure CI keeps only this output: show the servers' state, the disk and their last log
# lines before stopping them.
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "test: failed ($rc); server status, disk and log tails follow" >&2
    scripts/stack.sh status >&2 || true
    df -h . "${PPROXY_STACK_HOME:-$HOME/.cache/pproxy-stack}" >&2 || true
    for f in "${PPROXY_STACK_HOME:-$HOME/.cache/pproxy-stack}"/logs/{broker,namesrv,kafka,zookeeper}.log; do
      [[ -f $f ]] && { echo "--- tail of $f ---" >&2; tail -n 40 "$f" >&2; }
    done
  fi
  scripts/stack.sh down all || true
}
trap on_exit EXIT
scripts/stack.sh up all
eval "$(scripts/stack.sh env)"
export PPROXY_TEST_KAFKA PPROXY_TEST_ROCKETMQ_NAMESRV PPROXY_TEST_ZK
# Every server and tool is installed and started above: a test that would skip fails instead.
export PPROXY_REQUIRE_STACK=1

echo "test: cargo test" >&2
cargo test --locked --no-fail-fast --workspace --lib --bins --tests --examples
echo "test: load generator smoke (harness only; figures live in docs/)" >&2
BENCH_NO_BUILD=1 PPROXY_BIN="$PWD/target/debug/pproxy" LOADGEN_BIN="$PWD/target/debug/loadgen" \
  scripts/bench.sh smoke
echo "test: scheduler benchmark smoke (harness only; figures live in docs/)" >&2
cargo test --locked -q -p scheduler --bench scheduler_bench -- smoke
echo "test: package and control.sh" >&2
scripts/test-package.sh --debug
echo "test: Debian package (dpkg -i, the unit's user and command line, remove, purge)" >&2
scripts/test-deb.sh --debug
echo "test: python wire tests" >&2
PPROXY_BIN="$PWD/target/debug/pproxy" scripts/pytest.sh -q

# The smoke needs no servers; stopping them first leaves the CPU and memory to its cold build.
scripts/stack.sh down all || true
trap - EXIT
echo "test: fuzz smoke (libFuzzer, 5 s per target; nightly, no sanitizer, dev build)" >&2
FUZZ_SANITIZER=none FUZZ_PROFILE=dev scripts/fuzz.sh smoke 5
