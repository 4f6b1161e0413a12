#!/usr/bin/env bash
# Records a CPU flamegraph of `portvakt serve` answering privacyIDEA's /validate/check
# over HTTPS under wrk (wrong codes from home, for users enrolled by portvakt-load), as
# flamegraphs/http-validate-<commit>.svg, and prints where the samples fell: TLS, HTTP,
# parameters and JSON, the decision, the sign-in log.
#
#   flamegraphs/record-http.sh
#
# Settings (environment): SECONDS_RECORDED (10), USERS (1000), CONNECTIONS (16), FREQ (499).
# Needs perf, inferno and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${SECONDS_RECORDED:-10}
users=${USERS:-1000}
connections=${CONNECTIONS:-16}
freq=${FREQ:-499}
for tool in perf inferno-collapse-perf inferno-flamegraph wrk; do
    command -v "$tool" > /dev/null || { echo "record-http.sh: $tool is not installed" >&2; exit 1; }
done
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- engine bench || commit="$commit-dirty"
work=$(mktemp -d)
server=
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/http.toml" << CONF
listen = "127.0.0.1:24843"
unauthenticated_frontends = ["127.0.0.0/8"]
trusted_proxies = ["127.0.0.0/8"]
[[realms]]
name = "kommune"
tenant = "kommune"
CONF
(cd "$work" && exec "$bin/portvakt" serve --listen 127.0.0.1:24433 --metrics off --radius off \
    --http http.toml > serve.log 2>&1) &
server=$!
for _ in $(seq 1 100); do grep -q serving "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin/portvakt-load" run --server 127.0.0.1:24433 --data "$work/portvakt-data" --users "$users" \
    --enroll --duration 1 --warmup 0 --quiet > /dev/null
cat > "$work/wrong.lua" << LUA
local n = 0
request = function()
    n = n + 1
    return wrk.format("POST", "/validate/check",
        { ["Content-Type"] = "application/x-www-form-urlencoded" },
        "user=load-" .. (n % $users) .. "@kommune.no&pass=" .. string.format("%06d", (n * 7919) % 1000000)
            .. "&client=203.0.113.9")
end
LUA
wrk -t2 -c"$connections" -d$((seconds + 4))s -s "$work/wrong.lua" https://127.0.0.1:24843 > "$work/wrk.txt" &
loader=$!
sleep 2
perf record -q -e cpu-clock -F "$freq" --call-graph dwarf,16384 -p "$server" -o "$work/http.data" \
    -- sleep "$seconds" 2> "$work/perf.log"
wait "$loader"
cat "$work/wrk.txt"
perf script -i "$work/http.data" 2> /dev/null | inferno-collapse-perf > "$work/http.folded"
rm -f "$root"/flamegraphs/http-validate-*.svg
out="$root/flamegraphs/http-validate-$commit.svg"
inferno-flamegraph --title "portvakt serve, /validate/check over HTTPS, wrong codes ($commit)" \
    --subtitle "cpu-clock samples at $freq Hz with DWARF call graphs; width is CPU time" \
    < "$work/http.folded" > "$out"
echo "wrote ${out#"$root"/}"
# Where the samples fell: each stack counted once, under the first of these it contains.
python3 - "$work/http.folded" << 'PY'
import sys
parts = [
    ("the decision (Engine::decide)", ["Engine$LT$S$GT$::decide", "Engine<S>::decide", "::decide::"]),
    ("the sign-in log and durability", ["signin::", "App::settle", "durable"]),
    ("TLS (rustls)", ["rustls::"]),
    ("HTTP (hyper)", ["hyper::"]),
    ("parameters and JSON", ["privacyidea::params", "form_urlencoded", "serde_json", "percent_encoding"]),
    ("the kernel (sockets)", ["[unknown]", "entry_SYSCALL", "__x64_sys", "syscall"]),
]
total = 0
share = {name: 0 for name, _ in parts}
other = 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    n = int(count)
    total += n
    for name, keys in parts:
        if any(k in stack for k in keys):
            share[name] += n
            break
    else:
        other += n
for name, _ in parts:
    print(f"{name}: {100 * share[name] / total:.1f} %")
print(f"other: {100 * other / total:.1f} %  ({total} samples)")
PY
