TEMPLATES = ["cli", "web", "library"]


def wizard_py(greeting: str = "Let's set up a project."):
    yield {"type": "start", "data": {"message": greeting}}
    # Each answer arrives as the value of the `yield` that sent its question.
    name = yield {"type": "question", "text": "What is the project called?", "data": {"questionId": "name"}}
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the project name must be a non-empty string, not {name!r}")
    template = yield {"type": "question", "text": f"Which template for {name}?",
                      "data": {"questionId": "template", "options": TEMPLATES}}
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")
    yield {"type": "done", "data": {"name": name, "template": template}}
