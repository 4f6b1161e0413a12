#!/usr/bin/env bash
# Two nodes on one Redis against two nodes on the memory store, in the same run, on this
# machine: a `redis-server` (AOF everysec), two `portvakt serve --store redis://...` of this
# build (one deployment) and two `portvakt serve --store memory` (two separate servers);
# the same users enrolled. Each round runs one load generator per node at once (closed
# loop), each on its own half of the users as a load balancer's clients would be, and adds
# up what both achieved, shared and memory alternating; then Redis's own
# commands and bytes per decision, latency at half the shared peak (open loop), and
# `redis-benchmark` on the same swap function, for the store's own limit.
#
#   bench/shared.sh [rounds] [scenario ...]     default: 3 rounds of office, code, mix
#
# Settings (environment): USERS per node (20000), SECONDS_MEASURED (10), DEPTH (32).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(office code mix)
users=${USERS:-20000}
seconds=${SECONDS_MEASURED:-10}
depth=${DEPTH:-32}
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
redis_port=26379
mkdir -p "$work/redis"
redis-server --port $redis_port --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly yes --appendfsync everysec > "$work/redis/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p $redis_port ping > /dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$redis_port/bench"

serve() { # NAME PORT [ARGS...]: starts a node in $work/NAME; prints its pid
    local dir=$work/$1 port=$2
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && exec "$bin/portvakt" serve --listen "127.0.0.1:$port" --metrics off --radius off --http off "$@" > serve.log 2>&1) &
    local pid=$!
    for _ in $(seq 1 100); do grep -q serving "$dir/serve.log" 2>/dev/null && break; sleep 0.1; done
    echo $pid
}
# The second shared node gets the first one's certificates and master key.
a=$(serve shared-a 25833 --store "$url"); pids+=("$a")
mkdir -p "$work/shared-b"
cp -r "$work/shared-a/portvakt-data" "$work/shared-b/portvakt-data"
rm -rf "$work/shared-b/portvakt-data/sign-ins" "$work/shared-b/portvakt-data/state"
b=$(serve shared-b 25834 --store "$url"); pids+=("$b")
c=$(serve memory-a 25835 --store memory); pids+=("$c")
d=$(serve memory-b 25836 --store memory); pids+=("$d")

load() { # PORT DIR FIRST_USER [ARGS...]: users FIRST_USER.. (each node has its own half)
    local port=$1 dir=$2 first=$3
    shift 3
    (cd "$work/$dir" && "$bin/portvakt-load" run --server "127.0.0.1:$port" \
        --first-user "$first" --users "$users" --quiet "$@")
}
enrolled=(--enroll --duration 1 --warmup 0)
load 25833 shared-a 0 "${enrolled[@]}" > /dev/null
load 25833 shared-a "$users" "${enrolled[@]}" > /dev/null
load 25835 memory-a 0 "${enrolled[@]}" > /dev/null
load 25836 memory-b "$users" "${enrolled[@]}" > /dev/null
sleep 1 # node b follows the directory

rate() { grep -o 'achieved [0-9]*' <<< "$1" | grep -o '[0-9]*'; }
cpu() { grep -o 'server [0-9.]* us' <<< "$1" | grep -o '[0-9.]*'; }
stat() { redis-cli -p $redis_port info stats | grep "^$1:" | cut -d: -f2 | tr -d '\r'; }
# Commands the nodes sent since the last reset: Redis also counts the commands its
# functions run inside (a swap reads with HMGET and writes with HSET and PERSIST/PEXPIRE
# or DEL), so those are taken out.
trips() {
    redis-cli -p $redis_port info commandstats | tr -d '\r' | awk -F'[=,:]' '
        /^cmdstat_/ { name = $1; sub("cmdstat_", "", name); calls[name] = $3; total += $3 }
        END { print total - calls["hset"] - calls["del"] - calls["persist"] - calls["pexpire"] \
                - calls["fcall"] - calls["config|resetstat"] }'
}
# pair PORT1 DIR1 PID1 PORT2 DIR2 PID2 ARGS...: both loads at once; "total cpu1 cpu2"
pair() {
    local p1=$1 d1=$2 s1=$3 p2=$4 d2=$5 s2=$6
    shift 6
    load "$p1" "$d1" 0 "$@" --server-pid "$s1" > "$work/one" &
    local first=$!
    load "$p2" "$d2" "$users" "$@" --server-pid "$s2" > "$work/two"
    wait $first
    local x y
    x=$(cat "$work/one")
    y=$(cat "$work/two")
    echo "$(( $(rate "$x") + $(rate "$y") )) $(cpu "$x") $(cpu "$y")"
}

echo "$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $commit, $(redis-server --version | cut -d' ' -f3)"
echo "closed loop, per node 2 connections x 4 streams x $depth in flight, $seconds s after 2 s of warm-up, $users users"
echo
echo "| scenario | round | 2 nodes on Redis /s | 2 memory nodes /s | server CPU per request, Redis / memory | Redis commands per decision | bytes to Redis per decision |"
echo "|---|---|---|---|---|---|---|"
for scenario in "${scenarios[@]}"; do
    for r in $(seq 1 "$rounds"); do
        args=(--scenario "$scenario" --depth "$depth" --duration "$seconds" --warmup 2)
        redis-cli -p $redis_port config resetstat > /dev/null
        in0=$(stat total_net_input_bytes)
        read -r shared s1 s2 <<< "$(pair 25833 shared-a "$a" 25834 shared-b "$b" "${args[@]}")"
        cmds=$(trips)
        bytes=$(( $(stat total_net_input_bytes) - in0 ))
        read -r memory m1 m2 <<< "$(pair 25835 memory-a "$c" 25836 memory-b "$d" "${args[@]}")"
        # The decisions in the measured window and the warm-up both reach Redis: divide by
        # the answers of the whole run (achieved rate x (measured + warm-up) seconds).
        decisions=$(( shared * (seconds + 2) ))
        per=$(awk -v c="$cmds" -v n="$decisions" 'BEGIN { printf "%.2f", c / n }')
        perb=$(awk -v c="$bytes" -v n="$decisions" 'BEGIN { printf "%.0f", c / n }')
        echo "| $scenario | $r | $shared | $memory | $s1, $s2 / $m1, $m2 µs | $per | $perb |"
    done
done

echo
echo "Latency at half the shared peak of the last scenario (open loop, each node half of it):"
half=$(( shared / 4 ))
for node in "25833 shared-a 0" "25834 shared-b $users"; do
    # shellcheck disable=SC2086
    load $node --scenario "${scenarios[-1]}" --rate "$half" --duration "$seconds" --warmup 2 \
        | grep -A1 'latency (us)'
done

echo
echo "redis-benchmark, the same swap function (a record of 60 bytes, its version compared),"
echo "64 clients x 16 pipelined, 500,000 calls over 100,000 keys:"
redis-benchmark -p $redis_port -q -n 500000 -c 64 -P 16 -r 100000 \
    FCALL portvakt_swap 1 'bench:r:{__rand_int__}' '' 1 \
    'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' 0 |
    tr '\r' '\n' | grep 'requests per second' | tail -1
