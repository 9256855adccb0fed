import json

from main import count_lines


def test_reports_progress_every_n_lines_and_writes_a_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFAB_OUTPUT_DIR", str(tmp_path))
    text = "\n".join(f"line {n} has five words" for n in range(1, 26))
    events = list(count_lines(text, every=10))
    assert [event["type"] for event in events] == ["start", "progress", "progress", "progress", "done"]
    assert [event["data"]["current"] for event in events[1:4]] == [10, 20, 25]
    assert events[-1]["data"] == {"lines": 25, "words": 125, "characters": 9 * 21 + 16 * 22, "longest_line": 22}
    assert json.loads((tmp_path / "summary.json").read_text())["words"] == 125
    assert (tmp_path / "summary.txt").read_text().startswith("25 lines, 125 words")


def test_empty_text_has_no_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFAB_OUTPUT_DIR", str(tmp_path))
    events = list(count_lines(""))
    assert [event["type"] for event in events] == ["start", "done"]
