#!/usr/bin/env bash
# Latency at several fixed offered rates (open loop), client and server sharing this
# machine: one run per rate against a fresh `portvakt serve`, a Markdown table of the
# percentiles, and one SVG plot of every run's latency distribution.
#
#   bench/open-loop.sh OUT_DIR [rate ...]     default rates: 25k 50k 100k 150k 200k 250k
#
# Settings (environment): SCENARIO (office), USERS (100000), SECONDS_MEASURED (10).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: bench/open-loop.sh OUT_DIR [rate ...]}")
shift
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(25000 50000 100000 150000 200000 250000)
scenario=${SCENARIO:-office}
users=${USERS:-100000}
seconds=${SECONDS_MEASURED:-10}
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
mkdir -p "$out"
start_server 24733
cd "$work"
load() { "$bin/portvakt-load" run --server 127.0.0.1:24733 --users "$users" --quiet "$@"; }
load --enroll --duration 1 --warmup 0 > /dev/null

echo "$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $commit, $scenario"
echo
echo "| offered | achieved | p50 | p90 | p99 | p99.9 | max | CPU per request, client / server |"
echo "|---|---|---|---|---|---|---|---|"
reports=()
for rate in "${rates[@]}"; do
    json="$out/$scenario-$rate.json"
    load --scenario "$scenario" --rate "$rate" --duration "$seconds" --server-pid "$server" \
        --json > "$json"
    python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
n = lambda v: f"{v:,.0f}"
cpu = lambda v: "n/a" if v is None else f"{v:.1f}"
sat = f" ({r['generator_saturated']:,} not sent)" if r["generator_saturated"] else ""
print(f"| {n(r['offered_per_s'])}/s | {n(r['achieved_per_s'])}/s{sat} | {n(l['p50'])} | {n(l['p90'])} "
      f"| {n(l['p99'])} | {n(l['p99_9'])} | {n(l['max'])} "
      f"| {cpu(r['client_cpu_us_per_request'])} / {cpu(r['server_cpu_us_per_request'])} µs |")
PY
    reports+=("$json")
done
"$bin/portvakt-load" plot --out "$out/$scenario-open-loop.svg" \
    --title "Portvakt over QUIC on loopback: $scenario sign-ins at fixed rates ($commit)" \
    "${reports[@]}"
echo
echo "plot: $out/$scenario-open-loop.svg"
