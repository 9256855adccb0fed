#!/usr/bin/env bash
# Runs each Python prefab's own pytest tests in its folder, as its author does (`cd prefab && pytest`),
# then the runner's own tests (scripts/test_prefab_runner.py), then checks `prefab-gateway install` on a
# prefab with a requirements.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest
check_ok=1

pytest_in() { (cd "$1" && python3 -m pytest -q -p no:cacheprovider); }
for folder in prefabs/*/; do
    ls "$folder"test_*.py >/dev/null 2>&1 || continue
    echo "== pytest $folder"
    check "pytest in $folder" pytest_in "$folder"
done
echo "== pytest scripts/test_prefab_runner.py"
check "pytest scripts/test_prefab_runner.py" python3 -m pytest -q -p no:cacheprovider scripts/test_prefab_runner.py

echo "== prefab-gateway install: a Python prefab with requirements.txt gets its own .venv"
build_gateway
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/prefabs/needs_six"
echo 'six' >"$work/prefabs/needs_six/requirements.txt"
cat >"$work/prefabs/needs_six/main.py" <<'PY'
import six

def six_version():
    yield {"type": "done", "data": six.__version__}
PY
echo '{"functions": [{"name": "six_version", "streaming": true}]}' >"$work/prefabs/needs_six/prefab-manifest.json"
before=$(.build/debug/prefab-gateway validate "$work/prefabs" || true)
check "validate asks for install" grep -q "run \`prefab-gateway install\`" <<<"$before"
.build/debug/prefab-gateway install --prefabs "$work/prefabs"
installed() { .build/debug/prefab-gateway validate "$work/prefabs" && [ -x "$work/prefabs/needs_six/.venv/bin/python" ]; }
check "install makes the prefab valid, installed into needs_six/.venv" installed
checks_summary
