from main import batch_items


def test_yields_start_progress_per_item_and_done():
    events = list(batch_items(["a", "b", "c"]))
    assert [event["type"] for event in events] == ["start", "progress", "progress", "progress", "done"]
    assert [event["data"]["percentage"] for event in events[1:4]] == [33, 66, 100]
    assert events[2]["data"]["item"] == "b"
    assert events[-1] == {"type": "done", "data": {"total": 3}}
