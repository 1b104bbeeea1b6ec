#!/usr/bin/env bash
# Robustness run: schemathesis (PyPI) generates requests from /openapi.json of a running
# `toolbox api` and checks that no answer is a 5xx or violates the document. The API runs
# against Redis under a prefix of its own and without a worker, so that no generated task
# runs (the demo plugin has tasks that sleep, panic or abort on purpose).
# Needs: pip install schemathesis; a debug build (cargo build). Redis: REDIS, default local.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/toolbox
redis=${REDIS:-redis://127.0.0.1:6379/0}
examples=${EXAMPLES:-25}
prefix="schemathesis-$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
plugins=$(mktemp -d)
cp target/debug/libtoolbox_demo.so "$plugins/"
chmod 700 "$plugins"

command -v st >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 1; }
RUST_LOG=warn "$bin" api --bind "127.0.0.1:$port" --broker "$redis" --prefix "$prefix" --plugins "$plugins" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    redis-cli -u "$redis" --scan --pattern "{$prefix}:*" | xargs -r -d "\n" -n 1000 redis-cli -u "$redis" unlink >/dev/null
    rm -rf "$log" "$plugins"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done

# not_a_server_error and response_schema_conformance are the point; status_code_conformance
# and the rest come with "all".
st run "http://127.0.0.1:$port/openapi.json" --checks all --max-examples "$examples" \
    --request-timeout 10 --no-color
