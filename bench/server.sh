# Sourced by the measurement scripts (bench/quic.sh, bench/open-loop.sh,
# flamegraphs/record.sh), from the repository's root.

# Builds the release server and load generator; sets $bin to where they are.
build_release() {
    cargo build --release --locked -p portvakt -p portvakt-bench --bin portvakt --bin portvakt-load
    bin="$PWD/target/release"
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
