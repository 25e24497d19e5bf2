import pytest

from agent_platform.llm.mock import mock_provider_for
from tests.support.worker import through_the_worker


@pytest.fixture
def scripted():
    """The mock model `mock/scripted` (in the shared cache with Redis, where the worker sees it), reset before and
    after the test."""
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
    """Runs execute in-process (eager Celery) except through the real worker: tests marked `worker`, and tests
    marked `runs` on the full stack (tests.support.worker.through_the_worker)."""
    if through_the_worker(request.node):
        yield
        return
    from agent_platform.celery import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
