import json
import os
import time


def count_lines(text: str, every: int = 10, delay_ms: int = 0):
    lines = text.splitlines()
    total = len(lines)
    yield {"type": "start", "data": {"lines": total}}
    words = characters = longest = 0
    for number, line in enumerate(lines, 1):
        words += len(line.split())
        characters += len(line)
        longest = max(longest, len(line))
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if number % every == 0 or number == total:
            yield {
                "type": "progress",
                "data": {"current": number, "total": total, "percentage": int(number / total * 100),
                         "message": f"{number} of {total} lines"},
            }
    summary = {"lines": total, "words": words, "characters": characters, "longest_line": longest}
    output = os.environ.get("PREFAB_OUTPUT_DIR", ".")
    with open(os.path.join(output, "summary.json"), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
    with open(os.path.join(output, "summary.txt"), "w", encoding="utf-8") as file:
        file.write(f"{total} lines, {words} words, {characters} characters; longest line {longest}\n")
    yield {"type": "done", "data": summary}
