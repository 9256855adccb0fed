#!/usr/bin/env bash
# Tests the HTTP API against its own OpenAPI document. Builds the gateway, starts it on the example
# prefabs on a free loopback port, checks GET /openapi.json with openapi-spec-validator, then runs
# schemathesis against the live gateway: no 5xx, and every response's status, content type and
# body as documented. Fails on an invalid document or any schemathesis failure; always stops the
# gateway. Both tools come from PyPI into .build-ci-venv/ (ignored by git), pinned.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

schemathesis_version=4.32.5
validator_version=0.9.0
venv=.build-ci-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$schemathesis_version" ||
    ! "$venv/bin/python" -c "import openapi_spec_validator" 2>/dev/null; then
    echo "api-fuzz: installing schemathesis $schemathesis_version and openapi-spec-validator $validator_version (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$schemathesis_version" "openapi-spec-validator==$validator_version"
fi

port=$(free_port)
work=$(mktemp -d)
log="$work/gateway.log"
trap 'stop_gateways; rm -rf "$work"' EXIT

build_gateway
# Fuzzed inputs ask for any delay or step count: every call ends within 2 s (TIMEOUT), a question
# waits 1 s, and a client that leaves cancels its call at once.
start_gateway "$port" "$log" --prefabs prefabs --data "$work/data" \
    --timeout 2 --question-timeout 1 --resume-grace 0 --heartbeat 1
base="http://127.0.0.1:$port"

echo "== api-fuzz: /openapi.json against the OpenAPI 3.1 specification (openapi-spec-validator)"
curl -fsS "$base/openapi.json" -o "$work/openapi.json"
"$venv/bin/python" - "$work/openapi.json" <<'EOF'
import json, sys
from openapi_spec_validator import OpenAPIV31SpecValidator
document = json.load(open(sys.argv[1]))
errors = list(OpenAPIV31SpecValidator(document).iter_errors())
for error in errors:
    print(f"invalid: {'/'.join(map(str, error.absolute_path))}: {error.message}")
if errors:
    sys.exit(f"api-fuzz: /openapi.json is not a valid OpenAPI 3.1 document ({len(errors)} errors)")
print(f"valid OpenAPI {document['openapi']}: {len(document['paths'])} paths")
EOF

echo "== api-fuzz: schemathesis against the live gateway"
# Every phase: the schema's examples, its boundaries, random fuzzing, and stateful sequences that
# follow the links from X-Invocation-Id. --max-examples bounds each operation (about 4 minutes in
# all); hypothesis' deadline is already off in schemathesis 4. The seed is printed; API_FUZZ_SEED
# replays a run.
status=0
(cd "$work" && timeout -s KILL 900 "$OLDPWD/$venv/bin/st" run "$base/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples 50 \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    ${API_FUZZ_SEED:+--seed "$API_FUZZ_SEED"} \
    --no-color \
    --report junit,har --report-dir "$work/report") || status=$?

"$venv/bin/python" - "$work/report" "$status" <<'EOF'
import glob, json, sys
import xml.etree.ElementTree as ElementTree
report, status = sys.argv[1], int(sys.argv[2])
cases = [case for path in glob.glob(f"{report}/junit-*.xml") for case in ElementTree.parse(path).iter("testcase")]
failures = sum(len(case.findall("failure")) + len(case.findall("error")) for case in cases)
requests = sum(len(json.load(open(path))["log"]["entries"]) for path in glob.glob(f"{report}/har-*.json"))
operations = {case.get("name") for case in cases if case.get("name", "").split(" ")[0] in {"GET", "POST", "DELETE"}}
print(f"api-fuzz: {len(operations)} operations tested, {requests} requests, {failures} failures (schemathesis exit {status})")
sys.exit(0 if status == 0 and failures == 0 and operations and requests else 1)
EOF
