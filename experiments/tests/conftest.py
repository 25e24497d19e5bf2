import pytest

from tests.support.worker import through_the_worker


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
    """Experiments run in-process (eager Celery) except through the real worker: tests marked `worker`, and tests
    marked `runs` on the full stack (tests.support.worker.through_the_worker)."""
    if through_the_worker(request.node):
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


@pytest.fixture
def until_finished():
    """`until_finished(experiment_id)`: the experiment once it is no longer queued or running. In-process it has
    finished when its start returns; on a worker (tests marked `runs`, full stack) it is waited for."""
    import time

    from experiments.models import ACTIVE_STATUSES, Experiment

    def wait(experiment_id: int, timeout: float = 60.0) -> Experiment:
        deadline = time.monotonic() + timeout
        while True:
            experiment = Experiment.objects.get(pk=experiment_id)
            if experiment.status not in ACTIVE_STATUSES:
                return experiment
            assert time.monotonic() < deadline, f"experiment {experiment_id} still {experiment.status}"
            time.sleep(0.05)

    return wait
