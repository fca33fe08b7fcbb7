#!/usr/bin/env bash
# Runs the Python wire tests (tests/python) against the pproxy binary.
#
#   scripts/pytest.sh [pytest args]     e.g. scripts/pytest.sh -x -q
#   scripts/pytest.sh --prepare         only prepare the virtualenv (scripts/screenshots.sh)
#
# The virtualenv lives OUTSIDE the repository, at
# ${PPROXY_PY_VENV:-$HOME/.cache/pproxy-py/venv}, and is created on first use.
# The proxy binary is ${PPROXY_BIN:-target/debug/pproxy} (build it first).
# Exit status = pytest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PPROXY_PY_VENV:-$HOME/.cache/pproxy-py/venv}"
THRIFT_VERSION="0.22.0"
PYTEST_SPEC="pytest>=7,<10"
# Drives Debian's chromium through chromium-driver (tests/python/test_console.py).
SELENIUM_SPEC="selenium>=4.20,<5"
PY="${PYTHON:-python3}"

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$THRIFT_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import pytest, selenium, thrift  # noqa: F401
sys.exit(0 if version("thrift") == sys.argv[1] else 1)
PYEOF
}

if ! venv_ok; then
  echo "pytest.sh: preparing virtualenv $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "thrift==$THRIFT_VERSION" "$PYTEST_SPEC" "$SELENIUM_SPEC" >&2
  venv_ok || { echo "pytest.sh: virtualenv $VENV is not usable" >&2; exit 2; }
fi

"$ROOT/scripts/gen-thrift.sh" --check >&2
[ "${1:-}" = "--prepare" ] && exit 0

cd "$ROOT"
set +e
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -p no:cacheprovider tests/python "$@"
rc=$?
set -e
exit "$rc"
