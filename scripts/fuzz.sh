#!/usr/bin/env bash
# cargo-fuzz campaigns over the decoders and parsers (docs/RELIABILITY.md, "Fuzzing").
#
#   scripts/fuzz.sh smoke [SECONDS]        every target for SECONDS each (default 5), for CI
#   scripts/fuzz.sh runs TARGET N          one target for N executions (the recorded campaigns)
#   scripts/fuzz.sh time TARGET SECONDS    one target for SECONDS
#   scripts/fuzz.sh list                   the targets
#
# Needs the nightly toolchain (sanitizer flags); installs cargo-fuzz when missing. Builds go to
# $CARGO_TARGET_DIR when set (else fuzz/target); the corpus grows in fuzz/corpus/<target>, seeds
# are regenerated into fuzz/seeds/<target>, crashes land in fuzz/artifacts/<target>, and each
# run's libFuzzer output is kept in fuzz/logs/<target>-<UTC time>.log. Exit status is non-zero
# on a crash, a timeout (> FUZZ_TIMEOUT seconds for one input, default 10) or an out-of-memory.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(thrift_frame thrift_call delay_id proxy_config settings_yaml)
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

build_args=()
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
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" >&2 || true
    fi
    return "$rc"
}

prepare() {
    python3 fuzz/seeds/gen.py
    (cd fuzz && cargo "+$TOOLCHAIN" fuzz build "${build_args[@]}")
}

case "${1:-}" in
    smoke)
        secs="${2:-5}"
        prepare
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
        sed -n '2,14p' "$0" >&2
        exit 2
        ;;
esac
