#!/usr/bin/env bash
# Builds pproxy and runs it on its embedded default: Thrift on 9613, admin HTTP on 9614, an
# in-process Kafka-protocol cluster (its bootstrap address is logged and shown by /status).
# No broker, no ZooKeeper. Ctrl-C drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
exec target/release/pproxy run "$@"
