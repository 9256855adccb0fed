#!/usr/bin/env bash
# Drives the web playground (GET /) in a real browser: Debian's chromium + chromedriver through
# Selenium. Installs what is missing, builds the gateway, starts it on the example prefabs on a free
# loopback port with a temporary --data directory, runs scripts/browser-test.py, and always stops
# the server. Screenshots go to artifacts/browser/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { # runs a command as root: directly, or through sudo when there is one
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "browser-test: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "browser-test: installing chromium and chromium-driver (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c "import selenium" 2>/dev/null; then
    echo "browser-test: installing selenium (PyPI)"
    python3 -m pip install --quiet selenium ||
        python3 -m pip install --quiet --break-system-packages selenium # an externally managed Python
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
log="$data/gateway.log"
artifacts=artifacts/browser

server=
keyed=
cleanup() {
    for pid in $server $keyed; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$data"
}
trap cleanup EXIT

if ! swift build --product prefab-gateway >"$data/build.log" 2>&1; then
    cat "$data/build.log"
    echo "browser-test: the build failed"
    exit 1
fi
.build/debug/prefab-gateway serve --host 127.0.0.1 --port "$port" --data "$data" >"$log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; echo "browser-test: the gateway did not start"; exit 1; }
    sleep 0.1
done

# A second gateway that requires an API key, for the playground's key prompt. Its file URLs name
# another origin (localhost, where the page is on 127.0.0.1), which CORS lets the page read: the
# playground must not send its key there.
keyed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BROWSER_TEST_API_KEY=browser-key-0123456789abcdef
PREFAB_GATEWAY_API_KEYS=$BROWSER_TEST_API_KEY .build/debug/prefab-gateway serve --host 127.0.0.1 \
    --port "$keyed_port" --data "$data/keyed" --public-url "http://localhost:$keyed_port" \
    --cors-origin "http://127.0.0.1:$keyed_port" >"$data/keyed.log" 2>&1 &
keyed=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$keyed_port/health" >/dev/null && break; sleep 0.1; done

mkdir -p "$artifacts"
rm -f "$artifacts"/*.png
# SE_OFFLINE: Selenium Manager must never try to download a browser or a driver.
if ! SE_OFFLINE=true timeout 600 python3 scripts/browser-test.py "http://127.0.0.1:$port" "$artifacts" \
    "http://127.0.0.1:$keyed_port"; then
    echo "browser-test: FAILED; the gateway's log:"
    tail -n 50 "$log"
    exit 1
fi
