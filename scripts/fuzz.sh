#!/usr/bin/env bash
# Runs the fuzz targets for real (outside CI): each for FUZZ_RUNS executions
# (10 million) or FUZZ_SECONDS (1800), whichever comes first, starting from
# its corpus in fuzz/corpus/TARGET; what adds coverage is merged back there
# (tests/fuzz_corpus.rs replays it on every test run). Prints a table:
# executions, time, executions/s, inputs added, findings. A finding (a
# crash, a panic, an INTERNAL answer) is kept in fuzz/artifacts/TARGET/ and
# ends that target's run.
#
#   scripts/fuzz.sh [TARGET...]        (default: every target)
#
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
# The first build compiles secmon with the sanitizer in release mode: about
# 40 minutes on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
die() { printf 'scripts/fuzz.sh: %s\n' "$*" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || die "cargo-fuzz is missing: cargo install cargo-fuzz"
runs=${FUZZ_RUNS:-10000000}
seconds=${FUZZ_SECONDS:-1800}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

# FUZZ_NO_BUILD=1: run the binaries as last built.
[ -n "${FUZZ_NO_BUILD:-}" ] || cargo +nightly fuzz build >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
work=$(mktemp -d /tmp/secmon-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf '| target | executions | seconds | exec/s | inputs added | findings |\n|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t" "corpus/$t"
    before=$(find "corpus/$t" -type f | wc -l)
    status=0
    "$bin/$t" "$work/$t" "corpus/$t" -runs="$runs" -max_total_time="$seconds" \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" -timeout=60 -rss_limit_mb=4096 \
        >"$work/$t.log" 2>&1 || status=$?
    "$bin/$t" -merge=1 -artifact_prefix="$work/" "corpus/$t" "$work/$t" >/dev/null 2>&1 || true
    after=$(find "corpus/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$work/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -1)
    findings=$(find "artifacts/$t" -type f | wc -l)
    [ "$status" = 0 ] || cp "$work/$t.log" "artifacts/$t/fuzz.log"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "${execs:-?}" "${secs:-$seconds+}" "${rate:-?}" \
        "$((after - before))" "$findings"
done
