#!/usr/bin/env python3
"""Checks the links of the project's Markdown files: README.md, every docs/*.md, and any other
tracked *.md (outside .build, bench/.venv and node_modules).

Every relative link and image must name a file or folder that exists, and every `#anchor`, in the
same file or another Markdown file, must be the GitHub slug of one of the target's headings
(lowercased; punctuation other than `-` and `_` dropped; each space a `-`; a repeated slug gets
-1, -2, ...). Links inside code (fenced blocks, `inline code`) are not links and are not checked.
External links (http, https, mailto, ...) are not fetched (CI has no network): they are counted
as skipped.

Standard library only. Exit status 0 when every link resolves; 1 with one line per broken link,
as file:line: target: reason.

    python3 scripts/check-links.py [FILE.md ...]    # default: the files above
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED_DIRS = (".build", "bench/.venv", "node_modules", ".git")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target): the target may hold one level of balanced parentheses.
INLINE_LINK = re.compile(
    r"\]\(\s*(<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<[a-z][^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def is_excluded(relative: str) -> bool:
    return any(relative == d or relative.startswith(d + "/") for d in EXCLUDED_DIRS)


def markdown_files() -> list[Path]:
    """README.md, docs/*.md, and every other tracked *.md (every *.md on disk outside git)."""
    found: set[Path] = set()
    readme = ROOT / "README.md"
    if readme.exists():
        found.add(readme)
    found.update((ROOT / "docs").glob("*.md"))
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.md"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")
        relatives = [name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        relatives = []
        for directory, subdirectories, files in os.walk(ROOT):
            base = os.path.relpath(directory, ROOT)
            subdirectories[:] = [
                s for s in subdirectories
                if not is_excluded(os.path.normpath(os.path.join(base, s)))
            ]
            relatives += [os.path.normpath(os.path.join(base, f)) for f in files if f.endswith(".md")]
    for relative in relatives:
        if not is_excluded(relative) and (ROOT / relative).exists():
            found.add(ROOT / relative)
    return sorted(found)


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and line.strip() == match.group(1):
            fence = None


def heading_text(raw: str) -> str:
    """What GitHub renders of a heading: code spans keep their text, links and images their text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    return text


def github_slug(text: str) -> str:
    """github-slugger: lowercase, keep letters, digits, marks, `_`, `-` and spaces, spaces to `-`."""
    kept = []
    for character in text.lower():
        if character in "-_ ":
            kept.append(character)
        elif unicodedata.category(character)[0] in "LNM":
            kept.append(character)
    return "".join(kept).replace(" ", "-")


_anchor_cache: dict[Path, set[str]] = {}


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings' slugs (duplicates numbered) and HTML ids."""
    if path in _anchor_cache:
        return _anchor_cache[path]
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        title = None
        match = HEADING.match(line)
        if match:
            title = match.group(2)
        elif previous.strip() and not previous.startswith((" ", "\t", "|", "-", "*", ">")) \
                and SETEXT_UNDERLINE.match(line) and not HEADING.match(previous):
            title = previous.strip()
        if title is not None:
            slug = github_slug(heading_text(title))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            slugs.add(slug if count == 0 else f"{slug}-{count}")
        slugs.update(HTML_ANCHOR.findall(line))
        previous = line
    _anchor_cache[path] = slugs
    return slugs


def links(path: Path):
    """(line number, target) of every link and image outside code."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(prose)]
        targets += HTML_LINK.findall(prose)
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            yield number, target


def check(path: Path) -> tuple[list[str], int, int]:
    """The broken links of one file, how many links were checked, and how many were skipped."""
    broken: list[str] = []
    checked = skipped = 0
    where = os.path.relpath(path, ROOT)
    for number, target in links(path):
        if SCHEME.match(target) or target.startswith("//"):
            skipped += 1
            continue
        checked += 1
        link, _, fragment = target.partition("#")
        if not link and not fragment:
            broken.append(f"{where}:{number}: ({target}): an empty link")
            continue
        link = urllib.parse.unquote(link)
        if link.startswith("/"):
            destination = ROOT / link.lstrip("/")
        elif link:
            destination = (path.parent / link).resolve()
        else:
            destination = path
        if not destination.exists():
            broken.append(f"{where}:{number}: {target}: no file {os.path.relpath(destination, ROOT)}")
            continue
        if fragment:
            if destination.is_dir() or destination.suffix.lower() != ".md":
                continue  # GitHub's own anchors (#L10 in code): not ours to check
            if urllib.parse.unquote(fragment) not in anchors(destination):
                broken.append(
                    f"{where}:{number}: {target}: no heading with anchor #{fragment} in "
                    f"{os.path.relpath(destination, ROOT)}"
                )
    return broken, checked, skipped


def main(arguments: list[str]) -> int:
    files = [Path(a).resolve() for a in arguments] if arguments else markdown_files()
    broken: list[str] = []
    checked = skipped = 0
    for path in files:
        file_broken, file_checked, file_skipped = check(path)
        broken += file_broken
        checked += file_checked
        skipped += file_skipped
    for line in broken:
        print(line)
    summary = (f"{len(files)} Markdown files, {checked} relative links checked, "
               f"{skipped} external links skipped (not fetched)")
    if broken:
        print(f"FAIL: {len(broken)} broken links; {summary}")
        return 1
    print(f"ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
