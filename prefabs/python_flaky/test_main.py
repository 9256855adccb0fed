import pytest

from main import StepFailed, flaky_steps


def test_raises_at_the_failing_step_after_its_progress():
    events = []
    with pytest.raises(StepFailed, match="step 3 of 5"):
        for event in flaky_steps():
            events.append(event)
    assert [event["type"] for event in events] == ["start", "progress", "progress"]


def test_completes_when_no_step_fails():
    assert list(flaky_steps(steps=2, fail_at=0))[-1] == {"type": "done", "data": {"steps": 2}}
