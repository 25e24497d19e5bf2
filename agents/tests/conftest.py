import pytest

from agent_platform.llm.mock import mock_provider_for


@pytest.fixture
def scripted():
    """The in-process mock model `mock/scripted`, reset before and after the test."""
    mock = mock_provider_for("mock/scripted")
    mock.reset()
    yield mock
    mock.reset()


@pytest.fixture
def make_agent(db):
    from agents.services import agent_create

    def make(**overrides):
        data = {
            "slug": "helper",
            "name": "Helper",
            "model_endpoint": "mock/scripted",
            "system_prompt_text": "You are a helpful test agent.",
            "tools": ["calculator"],
        }
        data.update(overrides)
        return agent_create(data=data, owner=overrides.pop("owner", None))

    return make


@pytest.fixture(autouse=True)
def in_process_runs(request, settings):
    """Runs execute in-process (the embedded default) except in tests marked `worker`, even on the full stack."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    from agent_platform.celery import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
