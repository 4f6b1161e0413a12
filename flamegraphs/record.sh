#!/usr/bin/env bash
# Records CPU flamegraphs of `portvakt serve` under `portvakt-load`, one per scenario,
# as flamegraphs/<scenario>-<commit>.svg (replacing that scenario's older ones).
#
#   flamegraphs/record.sh [scenario ...]        default: office code mix
#
# Settings (environment): RATE offered requests/s (100000), SECONDS_RECORDED (10),
# USERS (100000), FREQ samples/s per CPU (499).
#
# Needs perf (Debian: linux-perf) and inferno (cargo install inferno). The VM has no
# hardware counters, so perf samples the cpu-clock event, with DWARF call graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(office code mix)
rate=${RATE:-100000}
seconds=${SECONDS_RECORDED:-10}
users=${USERS:-100000}
freq=${FREQ:-499}
for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" > /dev/null || { echo "record.sh: $tool is not installed" >&2; exit 1; }
done

. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- engine bench || commit="$commit-dirty"
start_server 24533
cd "$work"
load() { "$bin/portvakt-load" run --server 127.0.0.1:24533 --users "$users" --quiet "$@"; }
load --enroll --duration 1 --warmup 0 > /dev/null

for scenario in "${scenarios[@]}"; do
    echo "== $scenario at $rate/s: recording $seconds s of the server"
    # The load runs a little longer than the recording on both sides.
    load --scenario "$scenario" --rate "$rate" --warmup 2 --duration $((seconds + 2)) \
        --server-pid "$server" > "load-$scenario.txt" &
    loader=$!
    sleep 3
    perf record -q -e cpu-clock -F "$freq" --call-graph dwarf,16384 -p "$server" \
        -o "$scenario.data" -- sleep "$seconds" 2> "perf-$scenario.log" || {
        cat "perf-$scenario.log" >&2
        exit 1
    }
    wait "$loader"
    cat "load-$scenario.txt"
    perf script -i "$scenario.data" 2> /dev/null | inferno-collapse-perf > "$scenario.folded"
    rm -f "$root/flamegraphs/$scenario"-*.svg
    out="$root/flamegraphs/$scenario-$commit.svg"
    inferno-flamegraph --title "portvakt serve, $scenario sign-ins at $rate/s ($commit)" \
        --subtitle "cpu-clock samples at $freq Hz with DWARF call graphs; width is CPU time" \
        < "$scenario.folded" > "$out"
    echo "wrote ${out#"$root"/} ($(wc -l < "$scenario.folded") distinct stacks)"
done
