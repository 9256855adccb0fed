import pytest

from main import TEMPLATES, wizard_py


def test_asks_name_then_template_and_finishes_with_both():
    wizard = wizard_py("Hello")
    assert next(wizard) == {"type": "start", "data": {"message": "Hello"}}
    question = next(wizard)
    assert question["type"] == "question"
    assert question["data"] == {"questionId": "name"}
    question = wizard.send("demo")
    assert question["text"] == "Which template for demo?"
    assert question["data"] == {"questionId": "template", "options": TEMPLATES}
    assert wizard.send("web") == {"type": "done", "data": {"name": "demo", "template": "web"}}
    with pytest.raises(StopIteration):
        next(wizard)


def test_refuses_a_template_not_offered():
    wizard = wizard_py()
    next(wizard)
    next(wizard)
    wizard.send("demo")
    with pytest.raises(ValueError, match="unknown template 'desktop'"):
        wizard.send("desktop")


def test_refuses_an_empty_name():
    wizard = wizard_py()
    next(wizard)
    next(wizard)
    with pytest.raises(ValueError, match="non-empty"):
        wizard.send("  ")
