def batch_items(items: list):
    total = len(items)
    yield {"type": "start", "data": {"total": total}}
    for i, item in enumerate(items, 1):
        yield {"type": "progress", "data": {"current": i, "total": total, "percentage": int(i / total * 100), "item": item}}
    yield {"type": "done", "data": {"total": total}}
