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
start_http_server "$work" "$users"
server=$http_server
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
# Where the samples fell: each stack goes to the part its innermost recognised frame
# belongs to (frames read without their generic parameters, which name the TLS stream in
# every frame that handles the connection); time in the kernel goes to the part that
# called it, and is also said on its own.
python3 - "$work/http.folded" << 'PY'
import sys
parts = [
    ("the decision (portvakt_core, portvakt_store)", ["portvakt_core::", "portvakt_store::"]),
    ("the sign-in log", ["portvakt_server::signin::"]),
    ("parameters and JSON", ["privacyidea::params", "form_urlencoded::", "serde_json::", "percent_encoding::", "privacyidea::result"]),
    ("TLS (rustls, ring)", ["rustls::", "ring::", "ring_core_"]),
    ("HTTP (hyper)", ["hyper::", "httparse::"]),
    ("the runtime (tokio, mio)", ["tokio::", "mio::"]),
]
kernel_marks = ["[unknown]", "entry_SYSCALL", "__x64_sys", "do_syscall", "[kernel", "_raw_spin", "tcp_", "ext4_"]
def bare(frame):
    depth, out = 0, []
    for c in frame:
        if c == "<":
            depth += 1
        elif c == ">":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(c)
    return "".join(out)
total = 0
share = {name: [0, 0] for name, _ in parts}
other = [0, 0]
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    n = int(count)
    total += n
    frames = stack.split(";")
    in_kernel = any(m in frames[-1] for m in kernel_marks)
    for frame in reversed(frames):
        f = bare(frame)
        hit = next((name for name, keys in parts if any(k in f for k in keys)), None)
        if hit:
            share[hit][0] += n
            share[hit][1] += n if in_kernel else 0
            break
    else:
        other[0] += n
        other[1] += n if in_kernel else 0
print(f"{'part':48} {'all':>7} {'in the kernel':>14}")
for name, _ in parts:
    a, k = share[name]
    print(f"{name:48} {100 * a / total:6.1f} % {100 * k / total:12.1f} %")
print(f"{'other (allocation, threads, unresolved)':48} {100 * other[0] / total:6.1f} % {100 * other[1] / total:12.1f} %")
PY
