#!/usr/bin/env bash
# Runs the fuzz targets with their committed seeds (seeds/) and a working corpus
# (corpus/, not committed). Needs cargo-fuzz (cargo install cargo-fuzz); stable Rust
# builds the sanitizer flags with RUSTC_BOOTSTRAP=1, which this script sets.
#
#   fuzz/run.sh TARGET [libFuzzer options...]   one target, e.g. -runs=10000000
#   fuzz/run.sh --smoke [SECONDS]               every target for SECONDS (20) each (CI)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

seeds_of() {
    case $1 in
        wire_*) echo seeds/wire ;;
        *) echo "seeds/$1" ;;
    esac
}

run() {
    local target=$1
    shift
    mkdir -p "corpus/$target"
    local dirs=("corpus/$target")
    local seeds
    seeds=$(seeds_of "$target")
    [ -d "$seeds" ] && dirs+=("$seeds")
    cargo fuzz run "$target" "${dirs[@]}" -- "$@"
}

if [ "${1:-}" != --smoke ]; then
    [ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
    run "$@"
    exit
fi

seconds=${2:-20}
build_log=$(mktemp)
cargo fuzz build > "$build_log" 2>&1 || { tail -n 80 "$build_log" >&2; exit 1; }
rm -f "$build_log"
for target in $(cargo fuzz list); do
    log=$(mktemp)
    if run "$target" -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$')
        echo "$target: $runs runs in $seconds s, no findings"
        rm -f "$log"
    else
        echo "$target: FAILED" >&2
        tail -n 60 "$log" >&2
        exit 1
    fi
done
