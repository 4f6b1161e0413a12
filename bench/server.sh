# Sourced by the measurement scripts (bench/quic.sh, bench/open-loop.sh,
# bench/privacyidea.sh, flamegraphs/record.sh, flamegraphs/record-http.sh), from the
# repository's root.

# Builds the release server and load generator; sets $bin to where they are.
build_release() {
    cargo build --release --locked -p portvakt -p portvakt-bench --bin portvakt --bin portvakt-load
    bin="$PWD/target/release"
}

# start_http_server DIR USERS: runs `portvakt serve` in DIR with only its HTTPS frontend's
# loopback callers needing nothing and believed as proxies (https://127.0.0.1:24843, realm
# kommune), QUIC on 127.0.0.1:24433, and enrols portvakt-load's first USERS users through
# it. Sets $http_server to its process id; the caller stops it.
start_http_server() {
    mkdir -p "$1"
    cat > "$1/http.toml" << CONF
listen = "127.0.0.1:24843"
unauthenticated_frontends = ["127.0.0.0/8"]
trusted_proxies = ["127.0.0.0/8"]
[[realms]]
name = "kommune"
tenant = "kommune"
CONF
    (cd "$1" && exec "$bin/portvakt" serve --listen 127.0.0.1:24433 --metrics off --radius off \
        --http http.toml > serve.log 2>&1) &
    http_server=$!
    for _ in $(seq 1 100); do grep -q serving "$1/serve.log" 2>/dev/null && break; sleep 0.1; done
    "$bin/portvakt-load" run --server 127.0.0.1:24433 --data "$1/portvakt-data" --users "$2" \
        --enroll --duration 1 --warmup 0 --quiet > /dev/null
}

# start_server PORT: runs `portvakt serve` on its embedded defaults in a fresh temporary
# directory ($work), waits until it serves, and stops it when the script exits. Sets
# $server to its process id.
start_server() {
    work=$(mktemp -d)
    server=
    trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
    (cd "$work" && exec "$bin/portvakt" serve --listen "127.0.0.1:$1" --metrics off --radius off --http off > serve.log 2>&1) &
    server=$!
    for _ in $(seq 1 100); do grep -q serving "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
}
