#!/usr/bin/env bash
# build.sh [--debug] [--test]: builds pproxy and packs output/ (bin/pproxy, control.sh, conf/,
# README.md, VERSION) plus output/pproxy-<version>.tar.gz, which runs from wherever it is
# unpacked. Stops at the first failing step with its status (operations.md §1).
set -euo pipefail
cd "$(dirname "$0")"
profile=release
run_tests=0
for a in "$@"; do
  case "$a" in
    --debug) profile=debug ;;
    --test) run_tests=1 ;;
    *) echo "usage: $0 [--debug] [--test]" >&2; exit 2 ;;
  esac
done
if [ "$profile" = release ]; then
  cargo build --release --locked
else
  cargo build --locked
fi
[ "$run_tests" = 1 ] && cargo test --locked --workspace --lib --bins --tests
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
rm -rf output
mkdir -p output/bin output/conf
cp "target/$profile/pproxy" output/bin/
cp control.sh README.md output/
cp conf/* output/conf/
printf '%s %s\n' "$version" "$commit" > output/VERSION
tar -czf "output/pproxy-$version.tar.gz" -C output bin conf control.sh README.md VERSION
echo "build: output/pproxy-$version.tar.gz ($profile, $commit)"
