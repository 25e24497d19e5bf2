"""Full stack only (PostgreSQL + Redis + a real Celery worker): an experiment runs on the worker; the worker is
killed mid-run (SIGKILL); a new start within the heartbeat timeout is refused (409); after it, the run resumes on a
new worker and finishes, and no item whose result was stored before the kill reaches the model (is billed) again."""

import collections
import time

import pytest

from agent_platform.api.errors import PlatformError
from experiments import services
from experiments.models import Experiment, ExperimentResult, ExperimentStatus, ResultStatus
from tests.support.fixtures import create_endpoint_for_fake_server

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ITEMS = 40


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_resume_after_a_killed_worker_does_not_rerun_or_rebill_finished_items(
    celery_worker, fake_openai, user, settings
):
    fake_openai.latency = 0.2
    endpoint = create_endpoint_for_fake_server(fake_openai, name="exp-worker", max_retries=0)
    dataset = services.dataset_create(
        name="worker-ds",
        owner=user,
        items=[{"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(ITEMS)],
    )
    experiment = services.experiment_create(
        name="worker",
        dataset=dataset,
        concurrency=2,
        variants=[{"name": "A", "endpoint": endpoint.name}],
        evaluators=[{"type": "contains", "value": "item"}],
        owner=user,
    )
    services.experiment_start(experiment=experiment)  # committed: the task goes to the worker

    def completed():
        return ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count()

    wait_for(lambda: completed() >= 6, 60, "six stored results")
    celery_worker.kill()
    try:
        finished_before = {
            r.item.messages[0]["content"]
            for r in ExperimentResult.objects.filter(
                experiment=experiment, status=ResultStatus.COMPLETED
            ).select_related("item")
        }
        assert 6 <= len(finished_before) < ITEMS
        assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.RUNNING

        settings.EXPERIMENTS_HEARTBEAT_TIMEOUT = 2
        with pytest.raises(PlatformError) as info:  # the dead runner's heartbeat is still fresh
            services.experiment_start(experiment=experiment)
        assert info.value.code == "EXPERIMENT_ALREADY_RUNNING"
        time.sleep(2.5)
    finally:
        celery_worker.start()
    services.experiment_start(experiment=experiment)  # stale heartbeat: resume
    wait_for(
        lambda: Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.COMPLETED, 90, "the resumed run"
    )
    rows = ExperimentResult.objects.filter(experiment=experiment)
    assert completed() == ITEMS, list(
        rows.exclude(status=ResultStatus.COMPLETED).values("status", "error_code", "error_message")
    )
    calls = collections.Counter(r.messages[-1]["content"] for r in fake_openai.requests)
    assert all(calls[item] == 1 for item in finished_before), {k: calls[k] for k in finished_before if calls[k] != 1}
    assert set(calls) == {f"item {i}" for i in range(ITEMS)}
    # only calls in flight when the worker died (at most `concurrency` = 2), or returned in the few milliseconds
    # before their result was committed, can have been made twice
    assert sum(calls.values()) <= ITEMS + 4
