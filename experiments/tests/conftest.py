import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "background: run experiments in a background thread as the embedded default does"
    )


@pytest.fixture(autouse=True)
def _mocks():
    """Every experiments test starts and ends with the mock models' scripts and call logs empty."""
    from agent_platform.llm.mock import reset_all_mocks

    reset_all_mocks()
    yield
    reset_all_mocks()


@pytest.fixture(autouse=True)
def _in_process_runs(request):
    """Experiments run in-process (eager Celery) in these tests, on both stacks: the mock provider's scripts live in
    this process. Tests marked `worker` use the real worker instead."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    from django.conf import settings

    from agent_platform.celery import app

    previous, background = app.conf.task_always_eager, settings.EXPERIMENTS_BACKGROUND
    app.conf.task_always_eager = True
    settings.EXPERIMENTS_BACKGROUND = request.node.get_closest_marker("background") is not None
    yield
    settings.EXPERIMENTS_BACKGROUND = background
    app.conf.task_always_eager = previous
