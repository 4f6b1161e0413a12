#!/usr/bin/env bash
# privacyIDEA 3.14 and Portvakt side by side, in the same run: the same users with the same
# authenticator-app secrets in both, and the same wrk script against both servers'
# /validate/check, wrong codes and right codes, at the same concurrency.
#
#   bench/privacyidea.sh [users] [seconds] [connections]   default: 1000 10 16
#
# privacyIDEA is installed from PyPI into a throwaway virtualenv and run as its docs
# describe: gunicorn (4 workers) on its SQLite database, over plain HTTP. Portvakt is a
# release `portvakt serve` on its durable store, over HTTPS (wrk keeps connections open, so
# the handshake is paid once per connection). Needs python3 with venv, wrk, and the
# network to PyPI. Prints requests per second, p50 and p99, and each server's CPU per
# request (its processes' user and system time over the run, from /proc).
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000}
seconds=${2:-10}
connections=${3:-16}
command -v wrk > /dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }
. bench/server.sh
build_release
commit=$(git rev-parse --short HEAD)
work=$(mktemp -d)
portvakt= gunicorn=
trap 'kill $portvakt $gunicorn 2>/dev/null || true; rm -rf "$work"' EXIT

echo "installing privacyIDEA 3.14 into $work/venv ..." >&2
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q 'privacyidea==3.14' gunicorn >&2
py="$work/venv/bin/python"
cat > "$work/pi.cfg" << CONF
SQLALCHEMY_DATABASE_URI = 'sqlite:///$work/pi.sqlite'
SECRET_KEY = '$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')'
PI_PEPPER = '$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')'
PI_ENCFILE = '$work/enckey'
PI_AUDIT_KEY_PRIVATE = '$work/private.pem'
PI_AUDIT_KEY_PUBLIC = '$work/public.pem'
PI_LOGFILE = '$work/privacyidea.log'
PI_LOGLEVEL = 30
CONF
export PRIVACYIDEA_CONFIGFILE="$work/pi.cfg"
for step in create_enckey create_audit_keys create_tables; do
    "$work/venv/bin/pi-manage" setup "$step" > /dev/null 2>&1
done
# The users (a passwd-style resolver) in realm kommune, each with a TOTP token whose secret
# is portvakt-load's for that user.
"$py" - "$work" "$users" << 'PY' >&2
import sys
work, n = sys.argv[1], int(sys.argv[2])
def secret(i):
    s = bytearray(b"portvakt-load-secret")
    for k, b in enumerate(i.to_bytes(8, "little")):
        s[k] ^= b
    return bytes(s)
with open(f"{work}/users", "w") as f:
    for i in range(n):
        f.write(f"load-{i}:x:{1000 + i}:{1000 + i}:::\n")
from privacyidea.app import create_app
app = create_app(config_name="production", config_file=f"{work}/pi.cfg", silent=True)
with app.app_context():
    from privacyidea.lib.resolver import save_resolver
    from privacyidea.lib.realm import set_realm, set_default_realm
    from privacyidea.lib.token import init_token
    from privacyidea.lib.user import User
    save_resolver({"resolver": "users", "type": "passwdresolver", "fileName": f"{work}/users"})
    set_realm("kommune", [{"name": "users"}])
    set_default_realm("kommune")
    for i in range(n):
        init_token({"type": "totp", "otpkey": secret(i).hex(), "serial": f"TOTP{i:06}", "otplen": 6},
                   user=User(f"load-{i}", "kommune"))
print(f"privacyIDEA: {n} users with TOTP tokens")
PY
(cd "$work" && exec "$work/venv/bin/gunicorn" -w 4 -b 127.0.0.1:24880 --log-level warning \
    "privacyidea.app:create_app(config_name='production', config_file='$work/pi.cfg', silent=True)" \
    > gunicorn.log 2>&1) &
gunicorn=$!

# Portvakt: the same users (portvakt-load's, named the same) with the same secrets.
start_http_server "$work/pv" "$users"
portvakt=$http_server
for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:24880/ && break; sleep 0.2; done

# The wrk script: each request a user in turn and a code from the file wrk is given.
cat > "$work/validate.lua" << 'LUA'
local lines = {}
for line in io.lines(os.getenv("REQUESTS")) do lines[#lines + 1] = line end
local n = 0
request = function()
    n = n + 1
    local user, pass = lines[(n % #lines) + 1]:match("(%S+) (%S+)")
    return wrk.format("POST", "/validate/check",
        { ["Content-Type"] = "application/x-www-form-urlencoded" },
        "user=" .. user .. "&pass=" .. pass .. "&client=203.0.113.9")
end
LUA
requests() { # SCENARIO USER_SUFFIX -> a file of "user code" lines (right codes for now)
    "$py" - "$1" "$users" "$2" > "$work/requests-$1$2" << 'PY'
import hmac, struct, sys, time
scenario, n, suffix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def secret(i):
    s = bytearray(b"portvakt-load-secret")
    for k, b in enumerate(i.to_bytes(8, "little")):
        s[k] ^= b
    return bytes(s)
def totp(key, t):
    h = hmac.new(key, struct.pack(">Q", t // 30), "sha1").digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000)
for i in range(n):
    code = totp(secret(i), int(time.time())) if scenario == "right" else "%06d" % ((i * 7919) % 1000000)
    print(f"load-{i}{suffix} {code}")
PY
    echo "$work/requests-$1$2"
}
tick=$(getconf CLK_TCK)
cpu() { # PID... -> their user and system seconds together
    local total=0
    for p in "$@"; do
        total=$(awk -v t="$total" -v hz="$tick" '{ print t + ($14 + $15) / hz }' "/proc/$p/stat")
    done
    echo "$total"
}
run() { # NAME URL REQUESTS PIDS...
    local name=$1 url=$2 file=$3
    shift 3
    local before after
    before=$(cpu "$@")
    REQUESTS="$file" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/validate.lua" "$url" \
        > "$work/wrk.out"
    after=$(cpu "$@")
    python3 - "$name" "$before" "$after" "$work/wrk.out" << 'PY'
import re, sys
name, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
text = open(sys.argv[4]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
def lat(p):
    v, unit = re.search(p + r"%\s+([\d.]+)(us|ms|s)", text).groups()
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"| {name} | {rate:,.0f} | {lat('50'):.2f} ms | {lat('99'):.2f} ms | {(after - before) * 1e6 / max(total, 1):,.0f} µs | {errors.group(1) if errors else 0} |")
PY
}
pids_of_gunicorn() { echo "$gunicorn $(pgrep -P "$gunicorn" | tr '\n' ' ')"; }

echo "$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $commit, privacyIDEA 3.14 (gunicorn, 4 workers, SQLite)"
echo "wrk -t2 -c$connections -d${seconds}s, $users users, POST /validate/check (form), client 203.0.113.9"
echo
echo "| server, scenario | requests/s | p50 | p99 | server CPU per request | non-2xx |"
echo "|---|---|---|---|---|---|"
for scenario in wrong right; do
    # privacyIDEA's users are load-N in the default realm; Portvakt's load-N@kommune.no.
    pi=$(requests "$scenario" "")
    run "privacyIDEA, $scenario codes" http://127.0.0.1:24880 "$pi" $(pids_of_gunicorn)
    pv=$(requests "$scenario" "@kommune.no")
    run "Portvakt, $scenario codes" https://127.0.0.1:24843 "$pv" "$portvakt"
done
