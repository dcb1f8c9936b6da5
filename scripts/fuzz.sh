#!/usr/bin/env bash
# Run a cargo-fuzz target of the loader's parsers for a given time.
#
#   scripts/fuzz.sh TARGET [SECONDS]   one target (default 600 s)
#   scripts/fuzz.sh all [SECONDS]      every target, one after the other
#
# Targets (fuzz/fuzz_targets/, driving crates/dynload/src/fuzzing.rs):
# elf_header dynamic_section hash_tables version_tables relocation_tables
# ld_so_cache. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`);
# works on stable Rust with `--sanitizer none` (no ASan: panics, aborts,
# crashes, timeouts and out-of-memory are what is found; debug assertions
# and overflow checks are on, cargo-fuzz's default).
#
# An empty corpus (fuzz/corpus/TARGET) is seeded from this system's files by
# fuzz/seeds.py. Findings go to fuzz/artifacts/TARGET; minimise one with
# `cargo fuzz tmin --sanitizer none TARGET FILE` and add it to
# crates/dynload/tests/fuzz_regressions.rs. The libFuzzer log of the last
# run is fuzz/logs/TARGET.log.
set -euo pipefail

TARGETS=(elf_header dynamic_section hash_tables version_tables relocation_tables ld_so_cache)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() {
    local IFS='|'
    echo "usage: $0 {${TARGETS[*]}|all} [SECONDS]" >&2
    exit 2
}

# -max_len: the ELF targets take whole shared libraries (their ELF-file
# path: the dynamic section usually sits at the end of the data segment, so
# a truncated library would show the parsers nothing), and the seeds are
# the libraries of up to 8 MiB (fuzz/seeds.py, MAX_FILE). That costs
# little: the fuzzer still runs thousands of inputs a second, and its
# mutations soon favour the small raw images (seeded from the same
# libraries' table segments), which reach the same parsers. ld.so.cache is
# 30-60 KiB on a Debian system: 256 KiB leaves room to grow.
max_len() {
    case $1 in
        ld_so_cache) echo $((256 << 10)) ;;
        *) echo $((8 << 20)) ;;
    esac
}

seed() {
    local target=$1 corpus=fuzz/corpus/$1
    if [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ]; then
        return
    fi
    mkdir -p "$corpus"
    if command -v python3 >/dev/null; then
        python3 fuzz/seeds.py "$target" "$corpus"
    elif [ "$target" = ld_so_cache ]; then
        cp /etc/ld.so.cache "$corpus/"
    else
        for lib in libc.so.6 libz.so.1 libstdc++.so.6 libm.so.6 libgcc_s.so.1; do
            cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$corpus/" 2>/dev/null || true
        done
    fi
    echo "$target: seeded $(ls "$corpus" | wc -l) inputs into $corpus"
}

run() {
    local target=$1 seconds=$2 log=fuzz/logs/$1.log status=0
    seed "$target"
    mkdir -p fuzz/logs
    echo "$target: fuzzing for $seconds s (log: $log)"
    cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len="$(max_len "$target")" -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    # libFuzzer's last status line: executions, coverage, features, corpus.
    local done_line execs rate
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse)' "$log" | tail -n1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    echo "$target: ${done_line:-no status line}"
    echo "$target: ${execs:-?} executions (${rate:-?}/s), corpus directory: $(ls "fuzz/corpus/$target" | wc -l) files"
    if [ "$status" -ne 0 ]; then
        echo "$target: FAILED (status $status): see $log and fuzz/artifacts/$target" >&2
        grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|Test unit written)' "$log" >&2 || true
    fi
    return "$status"
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
seconds=${2:-600}
[[ $seconds =~ ^[0-9]+$ ]] || usage
if [ "$1" = all ]; then
    failed=0
    for t in "${TARGETS[@]}"; do
        run "$t" "$seconds" || failed=1
    done
    exit "$failed"
fi
[[ " ${TARGETS[*]} " == *" $1 "* ]] || usage
run "$1" "$seconds"
