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



def without_comments(text):
    """The manifest without // and /* */ comments, which the gateway tolerates; strings are kept."""
    out, i, in_string = [], 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


failures = 0
manifests = sorted(root.glob("prefabs/*/prefab-manifest.json")) + sorted(root.glob("bench/prefabs/*/prefab-manifest.json"))
for path in manifests:
    errors = list(validator.iter_errors(json.loads(without_comments(path.read_text()))))
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
    "an unknown isolation": {"runtime": {"isolation": "thread"}, "functions": [{"name": "f"}]},
    "workers below 0": {"runtime": {"workers": -1}, "functions": [{"name": "f"}]},
    "workers above 64": {"runtime": {"workers": 65}, "functions": [{"name": "f"}]},
    "workers as a string": {"runtime": {"workers": "2"}, "functions": [{"name": "f"}]},
    "max_calls of 0": {"runtime": {"max_calls": 0}, "functions": [{"name": "f"}]},
    "max_workers of 0": {"runtime": {"max_workers": 0}, "functions": [{"name": "f"}]},
}
for label, manifest in refused.items():
    if validator.is_valid(manifest):
        print(f"FAIL the schema accepts a manifest with {label}")
        failures += 1

print(f"{len(manifests) + len(refused) - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
