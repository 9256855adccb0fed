class StepFailed(Exception):
    error_code = "STEP_FAILED"


def flaky_steps(steps: int = 5, fail_at: int = 3):
    yield {"type": "start", "data": {"steps": steps}}
    for step in range(1, steps + 1):
        if step == fail_at:
            raise StepFailed(f"step {step} of {steps} failed on purpose")
        yield {"type": "progress", "data": {"current": step, "total": steps, "percentage": int(step / steps * 100)}}
    yield {"type": "done", "data": {"steps": steps}}
