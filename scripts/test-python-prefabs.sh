#!/usr/bin/env bash
# Runs each Python prefab's own pytest tests in its folder, as its author does (`cd prefab && pytest`),
# then the runner's own tests (scripts/test_prefab_runner.py), then checks `prefab-gateway install` on a
# prefab with a requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest

failed=0
for folder in prefabs/*/; do
    ls "$folder"test_*.py >/dev/null 2>&1 || continue
    echo "== pytest $folder"
    (cd "$folder" && python3 -m pytest -q -p no:cacheprovider) || failed=1
done
echo "== pytest scripts/test_prefab_runner.py"
python3 -m pytest -q -p no:cacheprovider scripts/test_prefab_runner.py || failed=1

echo "== prefab-gateway install: a Python prefab with requirements.txt gets its own .venv"
swift build --product prefab-gateway >/dev/null
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
if grep -q "run \`prefab-gateway install\`" <<<"$before"; then
    echo "ok: validate asks for install"
else
    echo "FAIL: validate did not ask for install"
    failed=1
fi
.build/debug/prefab-gateway install --prefabs "$work/prefabs"
if .build/debug/prefab-gateway validate "$work/prefabs" && [ -x "$work/prefabs/needs_six/.venv/bin/python" ]; then
    echo "ok: installed into needs_six/.venv"
else
    echo "FAIL: install did not make the prefab valid"
    failed=1
fi
exit $failed
