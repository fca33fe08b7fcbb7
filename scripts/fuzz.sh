#!/usr/bin/env bash
# cargo-fuzz campaigns over the decoders and parsers (docs/RELIABILITY.md, "Fuzzing").
#
#   scripts/fuzz.sh smoke [SECONDS]        every target for SECONDS each (default 5), for CI
#   scripts/fuzz.sh runs TARGET N          one target for N executions (the recorded campaigns)
#   scripts/fuzz.sh time TARGET SECONDS    one target for SECONDS
#   scripts/fuzz.sh list                   the targets
#
#   FUZZ_SANITIZER  address (default), leak, memory, thread or none: cargo fuzz -s, build and run
#   FUZZ_PROFILE    release (default; cargo-fuzz's optimised build, one codegen unit) or dev
#                   (cargo fuzz --dev: unoptimised, still libFuzzer-instrumented)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a finding (default 10)
#   FUZZ_TOOLCHAIN  the toolchain (default nightly; installed with --profile minimal if missing)
#
# Needs the nightly toolchain (sanitizer flags); installs cargo-fuzz when missing. Builds go to
# $CARGO_TARGET_DIR when set (else fuzz/target); the corpus grows in fuzz/corpus/<target>, seeds
# are regenerated into fuzz/seeds/<target>, crashes land in fuzz/artifacts/<target>, and each
# run's libFuzzer output is kept in fuzz/logs/<target>-<UTC time>.log (all git-ignored). Exit
# status is non-zero on a crash, a timeout (> FUZZ_TIMEOUT s for one input) or an out-of-memory.
# Another sanitizer or profile in the same target dir rebuilds everything.
#
# CI (scripts/test.sh, last step) runs `FUZZ_SANITIZER=none FUZZ_PROFILE=dev scripts/fuzz.sh
# smoke 5` into fuzz/target. Smoke mode also refuses a stale fuzz/Cargo.lock (cargo --locked)
# instead of rewriting it. Why not the default build: a cold build of the fuzz crate (pproxy with
# its Kafka, RocketMQ and TLS dependencies, all instrumented), measured in fuzz/ on the shared
# 2-vCPU machine, `nice -n 10`, load average about 4, each into an empty target dir:
#   cargo +nightly fuzz build                  AddressSanitizer, release   66 min (recorded earlier)
#   cargo +nightly fuzz build -s none          release                     28 min 03 s, 3.2 GB
#   cargo +nightly fuzz build -s none --dev    dev, debug = 1          8 min 33 s-9 min 46 s, 4.0 GB
# The smoke after a build takes 35-38 s (5 s per target); the CI step from a clean tree took
# 9 min 08 s in all. The dev build runs 2 000-16 000 exec/s per target instead of 45 000-160 000
# (release, no sanitizer), and without AddressSanitizer a memory error that does not crash goes
# unseen (pproxy's decoders are safe Rust, but settings_yaml reaches unsafe-libyaml through
# serde_yaml). Campaigns keep the defaults. Figures and reasoning: docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(thrift_frame thrift_call delay_id proxy_config settings_yaml)
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
SANITIZER="${FUZZ_SANITIZER:-address}"
PROFILE="${FUZZ_PROFILE:-release}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# The same flags for build and run: `cargo fuzz run` rebuilds when they differ.
# `proxy`: the targets over pproxy's parsers and dispatch (thrift_call needs only pproxy-wire).
build_args=(-s "$SANITIZER" --features proxy)
case "$PROFILE" in
    release) ;;
    dev) build_args+=(--dev) ;;
    *) echo "fuzz: FUZZ_PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    build_args+=(--target-dir "$CARGO_TARGET_DIR")
fi

# Runs one target with extra libFuzzer flags; prints the final statistics line. One process, one
# thread: libFuzzer's default (-jobs=N would fork workers that log to fuzz-<n>.log instead).
run_target() {
    local t="$1"
    shift
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" fuzz/logs
    local start=$SECONDS rc=0 log
    log="fuzz/logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log"
    (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${build_args[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -timeout="$TIMEOUT" -rss_limit_mb=2048 -print_final_stats=1 \
        "$@") >"$log" 2>&1 || rc=$?
    local last done_line
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
    echo "fuzz: $t: ${last:-no status line}; ${done_line:-not done} (wall $((SECONDS - start)) s, exit $rc, log $log)" >&2
    if [[ $rc -ne 0 ]]; then
        grep -E -A1 'ERROR|panicked|SUMMARY|Test unit written|Base64' "$log" >&2 || true
    fi
    return "$rc"
}

prepare() {
    python3 fuzz/seeds/gen.py
    if [[ "${1:-}" == locked ]] &&
        ! (cd fuzz && cargo "+$TOOLCHAIN" metadata --locked --format-version 1 >/dev/null); then
        echo "fuzz: fuzz/Cargo.lock is out of date (pproxy's dependencies changed?):" \
            "run (cd fuzz && cargo +$TOOLCHAIN fetch) and commit fuzz/Cargo.lock" >&2
        exit 1
    fi
    (cd fuzz && cargo "+$TOOLCHAIN" fuzz build "${build_args[@]}")
}

case "${1:-}" in
    smoke)
        secs="${2:-5}"
        prepare locked
        failed=0
        for t in "${TARGETS[@]}"; do
            run_target "$t" -max_total_time="$secs" || failed=1
        done
        exit "$failed"
        ;;
    runs)
        prepare
        run_target "$2" -runs="$3"
        ;;
    time)
        prepare
        run_target "$2" -max_total_time="$3"
        ;;
    list)
        printf '%s\n' "${TARGETS[@]}"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
