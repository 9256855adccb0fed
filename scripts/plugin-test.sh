#!/usr/bin/env bash
# Checks the build-tool plugin the way a prefab author meets it: a new Swift prefab folder is
# picked up by the next build with no edit outside it, and a manifest function without its Swift
# implementation fails the build with a clear message. Leaves the tree as it found it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

folder=prefabs/zz_plugin_check
[ ! -e "$folder" ] || { echo "FAIL: $folder already exists"; exit 1; }
cleanup() { rm -rf "$folder"; swift build --product prefab-gateway >/dev/null 2>&1 || true; }
trap cleanup EXIT

mkdir -p "$folder"
cat >"$folder/prefab-manifest.json" <<'JSON'
{"functions": [{"name": "zz_plugin_check", "streaming": true, "description": "added by plugin-test.sh"}]}
JSON
cat >"$folder/ZzPluginCheck.swift" <<'SWIFT'
import PrefabKit

enum ZzPluginCheck {
    static func zzPluginCheck(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        try context.yield(.content("picked up"))
    }
}
SWIFT
build_gateway
check "a new prefab folder is listed after the next build" \
    grep -q "^zz_plugin_check .*added by plugin-test.sh" <(.build/debug/prefab-gateway list 2>/dev/null)

# A second function in the manifest with no Swift implementation must fail the build.
cat >"$folder/prefab-manifest.json" <<'JSON'
{"functions": [{"name": "zz_plugin_check", "streaming": true}, {"name": "missing_one", "streaming": true}]}
JSON
if output=$(swift build --product prefab-gateway 2>&1); then
    check "a function without implementation fails the build" false
else
    check "a function without implementation fails the build naming it" \
        grep -q "type 'ZzPluginCheck' has no member 'missingOne'" <<<"$output"
fi

# A malformed manifest fails the build with its file and JSON path.
echo '{"functions": [{"name": 7}]}' >"$folder/prefab-manifest.json"
if output=$(swift build --product prefab-gateway 2>&1); then
    check "a malformed manifest fails the build" false
else
    check "a malformed manifest fails the build naming file and path" \
        grep -q "zz_plugin_check/prefab-manifest.json.*\$.functions\[0\].name" <<<"$output"
fi

checks_summary
