#!/usr/bin/env bash
# Checks `prefab-gateway new` the way a prefab author meets it: a scaffolded Swift prefab and a
# scaffolded Python prefab build, validate, are listed, pass their own tests and the format lint as
# they are, and left in prefabs/ do not fail the tests that read it; an existing or invalid name is
# refused with nothing created. Works in place in the repo (the registry plugin only sees prefabs/)
# and leaves the tree as it found it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

gateway=.build/debug/prefab-gateway
swift_folder=prefabs/zz_scaffold_swift
py_folder=prefabs/zz_scaffold_py
force_folder=prefabs/zz_scaffold_force
swift_test=Tests/PrefabsTests/ZzScaffoldSwiftTests.swift
# Everything this script may create, including what a faulty `new` might.
created=("$swift_folder" "$py_folder" "$force_folder" "$swift_test" prefabs/Bad-Name prefabs/bad_name
    Tests/PrefabsTests/BadNameTests.swift prefabs/batch_items)
for path in "${created[@]}"; do
    [ ! -e "$path" ] || { echo "FAIL: $path already exists"; exit 1; }
done
log=$(mktemp)
cleanup() {
    rm -rf "${created[@]}" "$log"
    swift build --product prefab-gateway >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Each check's output goes to $log, shown only when it fails.
check_ok=1
check_log=$log

# What exists under prefabs/ and Tests/, to show that a refused `new` created nothing.
snapshot() { find prefabs Tests -name __pycache__ -prune -o -print | sort; }
# refused ARGS...: `new ARGS` exits non-zero with an error message and leaves the tree unchanged.
refused() {
    local before after output status=0
    before=$(snapshot)
    output=$("$gateway" new "$@" 2>&1) || status=$?
    after=$(snapshot)
    echo "exit status $status: $output"
    [ "$status" -ne 0 ] && grep -qi "error" <<<"$output" && [ "$before" = "$after" ]
}
# creates NAME LANGUAGE FILE...: `new NAME --language LANGUAGE` succeeds and writes every FILE.
creates() {
    local name=$1 language=$2 file
    shift 2
    "$gateway" new "$name" --language "$language" || return 1
    for file in "$@"; do [ -f "$file" ] || { echo "missing: $file"; return 1; }; done
}
lists_both() {
    local out
    out=$("$gateway" list) && grep -q '^zz_scaffold_swift ' <<<"$out" && grep -q '^zz_scaffold_py ' <<<"$out"
}
# swift_tests_pass ARGS...: `swift test ARGS` passes and has run tests: Swift Testing ends with a
# summary such as "Test run with 3 tests in 1 suite passed after 0.002 seconds."
swift_tests_pass() {
    local out status=0
    out=$(swift test "$@" 2>&1) || status=$?
    echo "$out"
    [ "$status" -eq 0 ] && grep -Eq 'Test run with [1-9][0-9]* tests? .*passed' <<<"$out"
}
pytest_passes() { (cd "$1" && python3 -m pytest -q -p no:cacheprovider); }
force_uses_empty_folder() {
    "$gateway" new zz_scaffold_force --language python --force && pytest_passes "$force_folder"
}

check "swift build --product prefab-gateway" swift build --product prefab-gateway
check "new zz_scaffold_swift --language swift writes the manifest, the code and the test" \
    creates zz_scaffold_swift swift "$swift_folder/prefab-manifest.json" "$swift_folder/ZzScaffoldSwift.swift" \
    "$swift_test"
check "new zz_scaffold_py --language python writes the manifest, main.py and test_main.py" \
    creates zz_scaffold_py python "$py_folder/prefab-manifest.json" "$py_folder/main.py" "$py_folder/test_main.py"
check "the next build picks up the new Swift folder" swift build --product prefab-gateway
check "prefab-gateway validate passes" "$gateway" validate
check "prefab-gateway list shows both functions" lists_both
check "swift test --filter ZzScaffoldSwiftTests passes, running at least one test" \
    swift_tests_pass --filter ZzScaffoldSwiftTests
# Prefabs made by `new` and left in prefabs/ must not fail the suites that read that folder: the
# registry's (PrefabsTests) and the catalog's. The build above has compiled the tests with both.
check "the tests that read prefabs/ pass with both new prefabs in it" \
    swift_tests_pass --skip-build --filter 'PrefabsTests|PrefabCatalogTests'
check "pytest passes in $py_folder" pytest_passes "$py_folder"
check "the generated Swift passes swift format lint --strict" \
    swift format lint --strict --configuration .swift-format "$swift_folder/ZzScaffoldSwift.swift" "$swift_test"
if python3 -c "import jsonschema" 2>/dev/null; then
    check "the generated manifests pass scripts/check-manifests.py" python3 scripts/check-manifests.py
else
    echo "skip: scripts/check-manifests.py (python3 has no jsonschema module)"
fi
check "new refuses an existing prefab folder" refused zz_scaffold_py --language python
check "new refuses an existing folder for the other language too" refused zz_scaffold_swift --language python
check "new refuses a function name another prefab has (batch_items)" refused batch_items --language python
check "new refuses an invalid name (Bad-Name)" refused Bad-Name --language swift
check "new refuses a name that is not a valid function name (9lives)" refused 9lives --language python
check "new refuses a missing --language" refused zz_scaffold_other
mkdir "$force_folder"
check "new refuses an existing empty folder without --force" refused zz_scaffold_force --language python
check "new --force uses an existing empty folder" force_uses_empty_folder
rm -rf "$force_folder"

checks_summary
