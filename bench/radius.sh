#!/usr/bin/env bash
# RADIUS side by side, in the same run: Portvakt's RADIUS frontend (a release `portvakt
# serve` on its durable store, one loopback client that reports the user's address) and
# FreeRADIUS answering the same PAP Access-Requests from its users file, the ceiling users
# know. Both get the same closed-loop load from `portvakt-load radius` (every request
# with a Message-Authenticator, a User-Password and a Calling-Station-Id), alternating.
#
#   bench/radius.sh [rounds] [scenario ...]   default: 3 rounds of office, code
#
# Portvakt answers each scenario as its policy says (office: single factor from the
# municipal network; code: a right app code from home, checked and spent); FreeRADIUS
# answers every request from its users file (the same users, password 123456).
# Settings (environment): USERS (10000), SECONDS_MEASURED (10), WORKERS (64).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(office code)
users=${USERS:-10000}
seconds=${SECONDS_MEASURED:-10}
workers=${WORKERS:-64}
command -v freeradius > /dev/null || { echo "freeradius is missing (apt-get install freeradius)"; exit 1; }
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
work=$(mktemp -d)
portvakt= freeradius=
trap 'kill $portvakt $freeradius 2>/dev/null || true; rm -rf "$work"' EXIT
secret=bench-radius-shared-secret-0123

mkdir -p "$work/pv/data/radius" "$work/fr/run"
printf %s "$secret" > "$work/pv/data/radius/bench.secret"
printf %s "$secret" > "$work/secret"
cat > "$work/pv/radius.toml" << CONF
listen = "127.0.0.1:24812"
[[clients]]
name = "bench"
ranges = ["127.0.0.0/8"]
secret_file = "radius/bench.secret"
tenant = "kommune"
first_factor = "nas"
user_address = "calling-station-id"
CONF
(cd "$work/pv" && exec "$bin/portvakt" serve --listen 127.0.0.1:24433 --metrics off --data data --radius radius.toml --http off > serve.log 2>&1) &
portvakt=$!
for _ in $(seq 1 100); do grep -q serving "$work/pv/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin/portvakt-load" run --server 127.0.0.1:24433 --data "$work/pv/data" --users "$users" \
    --enroll --duration 1 --warmup 0 --quiet > /dev/null

# FreeRADIUS 3.2 as Debian ships it, with its own thread pool (5 to 32 threads), the
# users file holding the same users, PAP, and a Message-Authenticator required.
printf '$INCLUDE /usr/share/freeradius/dictionary\n' > "$work/fr/dictionary"
for i in $(seq 0 $((users - 1))); do
    echo "load-$i@kommune.no Cleartext-Password := \"123456\""
done > "$work/fr/users"
cat > "$work/fr/radiusd.conf" << CONF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = $work/fr
confdir = \${raddbdir}
modconfdir = \${confdir}
run_dir = \${confdir}/run
logdir = \${confdir}
libdir = /usr/lib/freeradius
pidfile = \${run_dir}/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {
    destination = stderr
    auth = no
}
security {
    max_attributes = 200
    reject_delay = 0
    allow_vulnerable_openssl = yes
}
thread pool {
    start_servers = 5
    max_servers = 32
    min_spare_servers = 3
    max_spare_servers = 10
    max_requests_per_server = 0
    max_queue_size = 65536
}
client loopback {
    ipaddr = 127.0.0.1
    secret = $secret
    require_message_authenticator = yes
}
modules {
    files {
        filename = \${confdir}/users
    }
    pap {
    }
}
server default {
    listen {
        type = auth
        ipaddr = 127.0.0.1
        port = 24813
    }
    authorize {
        files
        pap
    }
    authenticate {
        Auth-Type PAP {
            pap
        }
    }
}
CONF
freeradius -f -d "$work/fr" 2> "$work/fr/stderr.log" &
freeradius=$!
for _ in $(seq 1 300); do grep -q "Ready to process" "$work/fr/stderr.log" 2>/dev/null && break; sleep 0.1; done

load() { # PORT PID TARGET SCENARIO
    "$bin/portvakt-load" radius --server "127.0.0.1:$1" --server-pid "$2" --target "$3" \
        --scenario "$4" --secret-file "$work/secret" --users "$users" --password 123456 \
        --workers "$workers" --duration "$seconds" --warmup 2 --quiet --json
}
row() { # JSON
    python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_us"]
print("%d | %.0f | %.0f | %.1f | %s" % (r["achieved_per_s"], l["p50"], l["p99"], r["server_cpu_us_per_request"], " ".join("%s %d" % kv for kv in sorted({**r["outcomes"], **r["errors"]}.items()))))' <<< "$1"
}

echo "$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $commit, $(freeradius -v | head -1 | cut -d, -f1-2)"
echo "closed loop, $workers workers with one request each, $seconds s after 2 s of warm-up, $users users"
echo
echo "| scenario | round | server | requests/s | p50 µs | p99 µs | server CPU µs/request | replies |"
echo "|---|---|---|---|---|---|---|---|"
for scenario in "${scenarios[@]}"; do
    for r in $(seq 1 "$rounds"); do
        echo "| $scenario | $r | Portvakt | $(row "$(load 24812 "$portvakt" portvakt "$scenario")") |"
        echo "| $scenario | $r | FreeRADIUS | $(row "$(load 24813 "$freeradius" freeradius "$scenario")") |"
    done
done
