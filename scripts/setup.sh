#!/usr/bin/env bash
# Installs what building pproxy needs on a fresh Debian machine: a C toolchain, make, perl and
# pkg-config for the bundled librdkafka build. Only missing packages are installed.
#
#   scripts/setup.sh            build prerequisites
#   scripts/setup.sh --tests    also what the test suite needs (python3-venv, thrift-compiler,
#                               jq, openssl, curl, a JDK for the Apache servers, Debian's
#                               prometheus, chromium and chromium-driver, and what --deb
#                               needs, since the suite builds and installs the Debian package)
#   scripts/setup.sh --deb      also what `./build.sh --deb` needs (cargo-deb, dpkg-dev)
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have cc || need+=(gcc)
have c++ || need+=(g++)
have make || need+=(make)
have perl || need+=(perl)
have pkg-config || need+=(pkg-config)
have curl || need+=(curl)
have objcopy || need+=(binutils) # build.sh keeps the debug symbols apart
deb=0
case "${1:-}" in --tests | --deb) deb=1 ;; esac
if [ "$deb" = 1 ]; then
  have dpkg-shlibdeps || need+=(dpkg-dev) # cargo-deb's $auto dependencies
fi
if [ "${1:-}" = "--tests" ]; then
  have gdb || need+=(gdb)                        # scripts/test-deb.sh: symbols by build id
  have systemd-analyze || need+=(systemd)        # scripts/test-deb.sh: verifies the unit
  have deluser || need+=(adduser)
  have thrift || need+=(thrift-compiler)
  have jq || need+=(jq) # scripts/bench.sh smoke reads the load generator's JSON summaries
  have openssl || need+=(openssl) # tests/python/test_tls.py makes its certificates with it
  have mkfs.ext4 && have e2fsck || need+=(e2fsprogs) # tests/faults/disk_trouble.rs: ext4 on a loop device
  have losetup || need+=(mount)
  python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
  have java || need+=(openjdk-17-jre-headless)
  have prometheus && have promtool || need+=(prometheus) # tests/stack/prometheus.rs, tests/faults/dashboards.rs: a real server scrapes pproxy
  have chromium || need+=(chromium)     # tests/python/test_console.py, scripts/screenshots.sh
  have chromedriver || need+=(chromium-driver)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Without recommends: prometheus would bring its node exporter and web assets.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
have cargo || { echo "setup: cargo (Rust 1.95) is required: https://rustup.rs" >&2; exit 1; }
# The version is pinned so a package built today builds the same way tomorrow.
if [ "$deb" = 1 ] && ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.0'; then
  echo "setup: installing cargo-deb 3.8.0 (about 2 minutes)" >&2
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi
