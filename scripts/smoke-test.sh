#!/usr/bin/env bash
# Starts the real executable on the example prefabs (as the README's run command does) on a free
# loopback port, drives it with curl, and stops it, even on failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

port=$(free_port)
data=$(mktemp -d)
log="$data/gateway.log"
trap 'stop_gateways; rm -rf "$data"' EXIT
build_gateway
start_gateway "$port" "$log" --data "$data"

stream=$(curl -sN -X POST "http://127.0.0.1:$port/invoke/batch_process" -H 'Content-Type: application/json' \
    -d '{"inputs":{"items":["a","b","c"]}}')
echo "$stream"
check "batch_process streams start, three progress events and done" \
    test "$(echo "$stream" | grep -o '"type":"[a-z]*"' | tr '\n' ' ')" = \
    '"type":"start" "type":"progress" "type":"progress" "type":"progress" "type":"done" '
check "progress percentages 33, 66, 100" \
    test "$(echo "$stream" | grep -o '"percentage":[0-9]*' | tr '\n' ' ')" = '"percentage":33 "percentage":66 "percentage":100 '

# The example functions; a prefab added beside them (say by `prefab-gateway new`) is fine.
examples="batch_items batch_process chat_stream count_lines echo fail_midway flaky_steps report wizard wizard_py"
manifest=$(curl -s "http://127.0.0.1:$port/manifest")
for name in $examples; do
    check "manifest lists $name" grep -q "\"name\":\"$name\"" <<<"$manifest"
done

report=$(curl -s -X POST "http://127.0.0.1:$port/invoke/report" -H 'Accept: application/json' -d '{"inputs":{"rows":3}}')
url=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["files"][0]["url"])' "$report")
check "report.csv is served from its file URL" grep -q "^month,units,revenue" <(curl -s "$url")

python=$(curl -sN -X POST "http://127.0.0.1:$port/invoke/count_lines" -H 'Content-Type: application/json' \
    -d '{"inputs":{"text":"a b\nc d e\nf","every":1}}')
check "the Python prefab count_lines streams progress, its summary files and done" \
    test "$(echo "$python" | grep -o '"type":"[a-z]*"' | tr '\n' ' ')" = \
    '"type":"start" "type":"progress" "type":"progress" "type":"progress" "type":"files" "type":"done" '

# The question-and-answer round of docs/interactive-invocations.md: a stream in the background, answers posted with curl.
for function in wizard wizard_py; do
    events="$data/$function.sse"
    curl -sN -X POST "http://127.0.0.1:$port/invoke/$function" -d '{}' >"$events" &
    client=$!
    for _ in $(seq 1 100); do grep -q '"questionId":"name"' "$events" && break; sleep 0.05; done
    id=$(grep -o '"invocation_id":"[0-9a-f]*"' "$events" | cut -d'"' -f4)
    curl -s -X POST "http://127.0.0.1:$port/invocations/$id/messages" \
        -d '{"type":"answer","data":{"questionId":"name","answer":"demo"}}' >/dev/null
    for _ in $(seq 1 100); do grep -q '"questionId":"template"' "$events" && break; sleep 0.05; done
    curl -s -X POST "http://127.0.0.1:$port/invocations/$id/messages" \
        -d '{"type":"answer","data":{"questionId":"template","answer":"web"}}' >/dev/null
    timeout 10 tail --pid=$client -f /dev/null || kill $client
    cat "$events"
    check "$function answered with curl ends with done carrying both answers" \
        grep -q '"type":"done","data":{"name":"demo","template":"web"}' "$events"
    status=$(curl -s "http://127.0.0.1:$port/invocations/$id")
    check "$function is done at /invocations/<id>" grep -q '"state":"done"' <<<"$status"
done

lists_examples() {
    local listed name
    listed=$(.build/debug/prefab-gateway list 2>/dev/null | tail -n +2 | cut -d' ' -f1) || return 1
    for name in $examples; do grep -qx "$name" <<<"$listed" || { echo "not listed: $name"; return 1; }; done
}
check "list prints every example function" lists_examples
check "validate accepts the example prefabs" .build/debug/prefab-gateway validate prefabs
mkdir -p "$data/broken/bad"
echo '{"functions": [{"name": "bad", "parameters": [{"name": "x", "type": "text"}]}]}' >"$data/broken/bad/prefab-manifest.json"
validation=$(.build/debug/prefab-gateway validate "$data/broken" || echo "exit $?")
echo "$validation"
check "validate refuses a broken manifest with file, path and reason, exiting non-zero" \
    grep -q 'bad/prefab-manifest.json: \$.functions\[0\].parameters\[0\].type: unknown type .text.*exit 1' <<<"$(echo $validation)"

# API keys from the environment: the terminal client sends its key; without one it is refused.
keyed_port=$(free_port)
PREFAB_GATEWAY_API_KEYS=smoke-key-0123456789abcdef start_gateway "$keyed_port" "$data/keyed.log" --data "$data/keyed"
check "with keys, /manifest without one is 401" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$keyed_port/manifest")" = 401
keyed_call=$(PREFAB_GATEWAY_API_KEY=smoke-key-0123456789abcdef .build/debug/prefab-gateway invoke echo -i text=hi \
    --url "http://127.0.0.1:$keyed_port" --json 2>&1 || echo "exit $?")
check "invoke sends PREFAB_GATEWAY_API_KEY" grep -q '"success":true' <<<"$keyed_call"
refused=$(.build/debug/prefab-gateway invoke echo -i text=hi --url "http://127.0.0.1:$keyed_port" 2>&1 || echo "exit $?")
echo "$refused"
check "invoke without a key is refused with UNAUTHORIZED, exit 2" grep -q 'UNAUTHORIZED' <<<"$refused"
check "... exit 2" grep -q 'exit 2' <<<"$refused"

checks_summary || { cat "$log"; exit 1; }
