#!/usr/bin/env bash
# build.sh [--release|--debug] [--test] [--deb]: builds pproxy and packs output/ (bin/pproxy, control.sh,
# conf/, README.md, VERSION) plus output/pproxy-<version>.tar.gz, which runs from wherever it is
# unpacked. The shipped binary is stripped; its debug information is kept apart in
# output/pproxy-<version>.debug, which the binary names (.gnu_debuglink) and matches by build
# id, so gdb and perf symbolize a production binary once that file is beside it or under
# /usr/lib/debug (docs/PACKAGING.md). --deb also builds the Debian package with cargo-deb
# (output/pproxy_<version>-1_<arch>.deb and its -dbgsym .ddeb). Stops at the first failing step
# with its status (operations.md §1).
set -euo pipefail
cd "$(dirname "$0")"
profile=release
run_tests=0
deb=0
for a in "$@"; do
  case "$a" in
    --release) profile=release ;;
    --debug) profile=debug ;;
    --test) run_tests=1 ;;
    --deb) deb=1 ;;
    *) echo "usage: $0 [--release|--debug] [--test] [--deb]" >&2; exit 2 ;;
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
size() { du -h "$1" | cut -f1; }
rm -rf output
mkdir -p output/bin output/conf
debug_file=output/pproxy-$version.debug
# zlib-compressed sections: gdb, perf and Rust's own backtraces read them.
objcopy --only-keep-debug --compress-debug-sections=zlib "target/$profile/pproxy" "$debug_file"
objcopy --strip-all --add-gnu-debuglink="$debug_file" "target/$profile/pproxy" output/bin/pproxy
cp control.sh README.md output/
cp conf/* output/conf/
printf '%s %s\n' "$version" "$commit" > output/VERSION
tar -czf "output/pproxy-$version.tar.gz" -C output bin conf control.sh README.md VERSION
echo "build: output/pproxy-$version.tar.gz, $(size "output/pproxy-$version.tar.gz") ($profile, $commit; binary $(size output/bin/pproxy), stripped)"
echo "build: $debug_file, $(size "$debug_file") (debug symbols; not in the tarball)"
if [ "$deb" = 1 ]; then
  command -v cargo-deb >/dev/null || scripts/setup.sh --deb
  # cargo-deb maps the release asset path to the profile's directory. It warns that the dev
  # profile is meant for tests only: that is what the suite uses it for (scripts/test-deb.sh
  # packs the dev build rather than spend a release build in CI); releases use the default.
  deb_profile=release
  [ "$profile" = debug ] && deb_profile=dev
  cargo deb --no-build --locked --profile "$deb_profile" --dbgsym --compress-debug-symbols=zlib \
    --output output/ >/dev/null
  for f in output/*.deb output/*.ddeb; do
    echo "build: $f, $(size "$f")"
  done
fi
