#!/usr/bin/env python3
"""Validates every prefabs/*/prefab-manifest.json against manifests/prefab-manifest.schema.json,
and checks that the schema refuses manifests the gateway refuses. Exits non-zero on any failure."""
import json
import pathlib
import sys

import jsonschema

root = pathlib.Path(__file__).resolve().parent.parent
schema = json.loads((root / "manifests/prefab-manifest.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

failures = 0
manifests = sorted(root.glob("prefabs/*/prefab-manifest.json"))
for path in manifests:
    errors = list(validator.iter_errors(json.loads(path.read_text())))
    for error in errors:
        print(f"FAIL {path.relative_to(root)}: {error.json_path}: {error.message}")
    failures += len(errors)

refused = {
    "no functions": {"name": "x"},
    "empty functions": {"functions": []},
    "function without name": {"functions": [{"streaming": True}]},
    "unknown parameter type": {"functions": [{"name": "f", "parameters": [{"name": "a", "type": "text"}]}]},
    "streaming not boolean": {"functions": [{"name": "f", "streaming": "yes"}]},
    "name with a slash": {"functions": [{"name": "a/b"}]},
}
for label, manifest in refused.items():
    if validator.is_valid(manifest):
        print(f"FAIL the schema accepts a manifest with {label}")
        failures += 1

print(f"{len(manifests) + len(refused) - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
