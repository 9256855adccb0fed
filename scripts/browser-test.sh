#!/usr/bin/env bash
# Drives the web playground (GET /) in a real browser: Debian's chromium + chromedriver through
# Selenium. Installs what is missing, builds the gateway, starts it on the example prefabs on a free
# loopback port with a temporary --data directory, runs scripts/browser-test.py, and always stops
# the server. Screenshots go to artifacts/browser/ (ignored by git).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

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

port=$(free_port)
data=$(mktemp -d)
log="$data/gateway.log"
artifacts=artifacts/browser
trap 'stop_gateways; rm -rf "$data"' EXIT

build_gateway
start_gateway "$port" "$log" --data "$data"

# A second gateway that requires an API key, for the playground's key prompt. Its file URLs name
# another origin (localhost, where the page is on 127.0.0.1), which CORS lets the page read: the
# playground must not send its key there.
keyed_port=$(free_port)
export BROWSER_TEST_API_KEY=browser-key-0123456789abcdef
PREFAB_GATEWAY_API_KEYS=$BROWSER_TEST_API_KEY start_gateway "$keyed_port" "$data/keyed.log" --data "$data/keyed" \
    --public-url "http://localhost:$keyed_port" --cors-origin "http://127.0.0.1:$keyed_port"

mkdir -p "$artifacts"
rm -f "$artifacts"/*.png
# SE_OFFLINE: Selenium Manager must never try to download a browser or a driver.
if ! SE_OFFLINE=true timeout 600 python3 scripts/browser-test.py "http://127.0.0.1:$port" "$artifacts" \
    "http://127.0.0.1:$keyed_port"; then
    echo "browser-test: FAILED; the gateway's log:"
    tail -n 50 "$log"
    exit 1
fi
