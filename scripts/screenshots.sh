#!/usr/bin/env bash
# Regenerates the console screenshots in docs/console/ (overview.png, delay-lookup.png,
# dead-letters.png) with headless Chromium, from a pproxy in embedded mode with some traffic.
#
#   scripts/screenshots.sh
#
# Needs Debian's chromium and chromium-driver (scripts/setup.sh --tests) and the binary
# ${PPROXY_BIN:-target/debug/pproxy} (build it first). Uses the virtualenv of scripts/pytest.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PPROXY_PY_VENV:-$HOME/.cache/pproxy-py/venv}"
"$ROOT/scripts/pytest.sh" --prepare
export PPROXY_BIN="${PPROXY_BIN:-$ROOT/target/debug/pproxy}"
cd "$ROOT/tests/python"
PYTHONDONTWRITEBYTECODE=1 exec "$VENV/bin/python" console_screenshots.py
