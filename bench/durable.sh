#!/usr/bin/env bash
# The durable store against the memory store over QUIC, in the same run: two `portvakt
# serve` of this build, one on its default durable store and one with `--store memory`,
# each with the same users enrolled; then closed-loop runs of each scenario, durable and
# memory alternating, with the server's CPU per request.
#
#   bench/durable.sh [rounds] [scenario ...]     default: 3 rounds of office, code, mix
#
# Settings (environment): USERS (100000), SECONDS_MEASURED (10), DEPTH (32).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(office code mix)
users=${USERS:-100000}
seconds=${SECONDS_MEASURED:-10}
depth=${DEPTH:-32}
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
work=$(mktemp -d)
durable= memory=
trap 'kill $durable $memory 2>/dev/null || true; rm -rf "$work"' EXIT
serve() { # DIR PORT [ARGS...]
    local dir=$work/$1 port=$2
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && exec "$bin/portvakt" serve --listen "127.0.0.1:$port" --metrics off --radius off --http off "$@" > serve.log 2>&1) &
    for _ in $(seq 1 100); do grep -q serving "$dir/serve.log" 2>/dev/null && break; sleep 0.1; done
}
serve durable 24833
durable=$!
serve memory 24834 --store memory
memory=$!
load() { # PORT DIR [ARGS...]
    local port=$1 dir=$2
    shift 2
    (cd "$work/$dir" && "$bin/portvakt-load" run --server "127.0.0.1:$port" --users "$users" --quiet "$@")
}
load 24833 durable --enroll --duration 1 --warmup 0 > /dev/null
load 24834 memory --enroll --duration 1 --warmup 0 > /dev/null

echo "$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $commit"
echo "closed loop, 2 connections x 4 streams x $depth in flight, $seconds s after 2 s of warm-up"
echo
echo "| scenario | round | durable /s | memory /s | server CPU per request, durable / memory |"
echo "|---|---|---|---|---|"
for scenario in "${scenarios[@]}"; do
    for r in $(seq 1 "$rounds"); do
        args=(--scenario "$scenario" --depth "$depth" --duration "$seconds" --warmup 2)
        d=$(load 24833 durable "${args[@]}" --server-pid "$durable")
        m=$(load 24834 memory "${args[@]}" --server-pid "$memory")
        rate() { grep -o 'achieved [0-9]*' <<< "$1" | grep -o '[0-9]*'; }
        cpu() { grep -o 'server [0-9.]* us' <<< "$1" | grep -o '[0-9.]*'; }
        echo "| $scenario | $r | $(rate "$d") | $(rate "$m") | $(cpu "$d") / $(cpu "$m") µs |"
    done
done
