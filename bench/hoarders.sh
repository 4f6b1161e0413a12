#!/usr/bin/env bash
# What connections that give nothing back cost the server, and what it keeps after they
# leave: a release `portvakt serve` in a fresh directory, its resident memory before,
# while `hoarders` holds N connections (MODE partial or unread), and after they close.
#
#   HOLD=seconds PORTVAKT=binary bench/hoarders.sh [N] [MODE] [serve arguments...]
#
# PORTVAKT picks another server binary (an older build, to compare).
#
# `unread` connections go on being answered until each stream's window at the client is
# full (about 20 MB of answers a connection), so give them time: HOLD=40 for 64.
# docs/benchmarks.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
mode=${2:-unread}
hold=${HOLD:-10}
shift 2 || true
cargo build -q --release -p portvakt --bin portvakt
cargo build -q --release -p portvakt-bench --example hoarders
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"${PORTVAKT:-$bin/portvakt}" serve --listen 127.0.0.1:24435 --metrics off --radius off --http off --sign-in-log-mib 64 "$@" > serve.log 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q serving serve.log 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ { printf "%d MiB", $2 / 1024 }' /proc/$server/status; }
echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "server before: $(rss)"
N=$n MODE=$mode SERVER=127.0.0.1:24435 DATA=portvakt-data HOLD=$hold "$bin/examples/hoarders" &
client=$!
sleep $((hold - 2))
echo "server while held: $(rss)"
wait $client
sleep 3
echo "server after: $(rss)"
