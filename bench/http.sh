#!/usr/bin/env bash
# HTTP benchmark of the API with wrk: POST /tasks/execute/noop and GET /tasks/status/{id}
# on the Redis broker, 50 connections. Needs wrk (`apt-get install wrk`), a release build
# (`cargo build --release -p toolbox -p toolbox-demo`) and Redis (REDIS, default local).
set -euo pipefail
cd "$(dirname "$0")/.."
# TOOLBOX: another build to compare (its folder must hold libtoolbox_demo.so too).
bin=${TOOLBOX:-target/release/toolbox}
plugins=$(dirname "$bin")
port=${PORT:-18080}
redis=${REDIS:-redis://127.0.0.1:6379/0}
seconds=${SECONDS_PER_RUN:-10}
prefix="bench-http-$$"
log=$(mktemp)
script=$(mktemp --suffix .lua)

[ -x "$bin" ] || { echo "build first: cargo build --release -p toolbox -p toolbox-demo" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

RUST_LOG=${RUST_LOG:-warn} "$bin" api --bind "127.0.0.1:$port" --broker "$redis" --prefix "$prefix" \
    --plugins "$plugins" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Only this run's keys.
    redis-cli -u "$redis" --scan --pattern "{$prefix}:*" | xargs -r -d "\n" -n 1000 redis-cli -u "$redis" unlink >/dev/null
    rm -f "$log" "$script"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done

echo 'wrk.method = "POST"' >"$script"
echo "== POST /tasks/execute/noop, 50 connections, ${seconds}s"
wrk -t2 -c50 -d"${seconds}s" --latency -s "$script" "http://127.0.0.1:$port/tasks/execute/noop"

id=$(curl -sf -XPOST "http://127.0.0.1:$port/tasks/execute/echo" -d '{"hello": "world"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["task_id"])')
echo "== GET /tasks/status/$id, 50 connections, ${seconds}s"
wrk -t2 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$port/tasks/status/$id"
