#!/usr/bin/env bash
# QUIC on loopback, client and server sharing this machine: the maximum rate (closed loop)
# against Portvakt and against a bare quinn echo in the same run, then latency at fixed
# offered rates (open loop) at fractions of the measured maximum.
#
#   bench/quic.sh [repetitions] [users]
#
# Prints each run's report; docs/benchmarks.md records the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
users=${2:-100000}
. bench/server.sh
build_release
start_server 24433
echo=
trap 'kill $server $echo 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
# The echo server uses the certificates the server makes, so it starts second.
"$bin/portvakt-load" echo --listen 127.0.0.1:24434 > echo.log 2>&1 &
echo=$!
for _ in $(seq 1 100); do grep -q serving echo.log 2>/dev/null && break; sleep 0.1; done

echo "== machine"
nproc
grep -m1 'model name' /proc/cpuinfo || true
git -C "$OLDPWD" rev-parse --short HEAD

load() { "$bin/portvakt-load" run --users "$users" --quiet "$@"; }
load --server 127.0.0.1:24433 --enroll --duration 1 --warmup 0 > /dev/null

rates=()
for r in $(seq 1 "$reps"); do
    echo "== closed loop, round $r: Portvakt"
    load --server 127.0.0.1:24433 --server-pid $server | tee portvakt.txt
    rates+=("$(grep -o 'achieved [0-9]*' portvakt.txt | grep -o '[0-9]*')")
    echo "== closed loop, round $r: echo"
    load --server 127.0.0.1:24434 --echo --server-pid $echo
done
max=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(( (reps + 1) / 2 ))p")
echo "== median maximum: $max decisions/s"
for fraction in 2 4; do
    rate=$(( max / fraction ))
    for r in $(seq 1 "$reps"); do
        echo "== open loop at 1/$fraction of the maximum ($rate/s), round $r"
        load --server 127.0.0.1:24433 --rate "$rate" --server-pid $server
    done
done
