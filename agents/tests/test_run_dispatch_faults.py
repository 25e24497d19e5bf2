"""Dispatching runs through faults: a worker that cannot reach the database retries instead of dropping the run; runs
accepted while the broker is down, or lost with its restart, are sent again by the relay (the outbox); the reaper
and the relay have their own queue, so a backlog of runs does not delay them; and each run is sent again once per
window, not on every pass. The full-stack tests (PostgreSQL, Redis, real workers) come first."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from agents import services
from agents.models import Run, RunStatus
from agents.services import execution
from tests.support.worker import CeleryWorker, worker_environment

FULL_STACK = pytest.mark.skipif(
    not (django_settings.USING_POSTGRES and django_settings.REDIS_URL),
    reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): real worker processes share the test database",
)
RUNS_URL = "/api/v1/agents/{slug}/runs/"


def wait_until(predicate, *, timeout: float = 60.0, what: str = "", log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log() if log else ''}")


def statuses(ids) -> dict[str, str]:
    return {str(i): s for i, s in Run.objects.filter(id__in=ids).values_list("id", "status")}


def all_finished(ids) -> bool:
    return all(s in ("succeeded", "failed", "cancelled") for s in statuses(ids).values()) and len(statuses(ids)) == len(
        ids
    )


@pytest.fixture
def own_queue(settings):
    """This test's own queues (runs and maintenance): the session's shared worker must not take its tasks."""
    from agent_platform.celery import app

    previous = app.conf.task_default_queue
    queue = f"{previous}-faults-{uuid.uuid4().hex[:6]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous


@pytest.fixture
def worker_factory(own_queue):
    """Start real Celery workers on this test's queues (both the run queue and the maintenance queue)."""
    started: list[CeleryWorker] = []

    def start(*, concurrency: int = 2, **env: str) -> CeleryWorker:
        worker = CeleryWorker(env=worker_environment(CELERY_QUEUE=own_queue, **env), concurrency=concurrency)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()


def _mock_agent(slug: str = "faults", **overrides):
    from agents.services import agent_create

    data = {"slug": slug, "name": "Faults", "model_endpoint": f"mock/{slug}", "system_prompt_text": "Be brief."}
    return agent_create(data={**data, **overrides})


def _start_runs(client, slug: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = client.post(RUNS_URL.format(slug=slug), {"input": f"hello {i}"}, format="json")
        assert response.status_code == 202, response.content[:500]
        assert response.json()["status"] == "queued"
        ids.append(response.json()["id"])
    return ids


# --- full stack: real workers ---------------------------------------------------------------------------------


@FULL_STACK
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_runs_a_worker_picks_up_while_its_database_refuses_finish_once_it_answers(worker_factory, key_client):
    from django.db import connection

    from tests.support.pg_proxy import TcpProxy

    _mock_agent()
    params = connection.settings_dict
    upstream = (params.get("HOST") or "127.0.0.1", int(params.get("PORT") or 5432))
    proxy = TcpProxy(upstream).start()  # refusing
    try:
        user = params.get("USER") or "postgres"
        password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
        database_url = f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{params['NAME']}"
        worker = worker_factory(DATABASE_URL=database_url, AGENT_RUN_RETRY_BACKOFF_MAX_SECONDS="2")

        ids = _start_runs(key_client, "faults", 5)  # accepted by the API, which reaches the database itself
        wait_until(lambda: proxy.refused >= 6, timeout=60, what="the worker trying the database", log=worker.log)
        assert set(statuses(ids).values()) == {"queued"}  # not claimed, and not dropped either

        proxy.allow()
        wait_until(lambda: all_finished(ids), timeout=60, what="the runs to finish", log=worker.log)
        runs = list(Run.objects.filter(id__in=ids))
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}, [(r.status, r.error_code) for r in runs]
        assert {r.attempts for r in runs} == {1}  # each executed once
        assert all(r.output for r in runs)
    finally:
        proxy.stop()


@pytest.fixture
def redis_broker(settings):
    """A `redis-server` of its own (no persistence: a restart loses its queues) as this process's Celery broker."""
    from agent_platform.celery import app
    from tests.support.redis_server import RedisServer

    server = RedisServer()
    if not server.binary:
        pytest.skip("redis-server is not installed")
    server.start()

    def use(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None  # the next publish connects to `url`
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = server.url
    use(server.url)
    yield server
    use(previous)
    server.kill()


@FULL_STACK
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_runs_accepted_before_and_during_a_redis_outage_run_after_it(redis_broker, worker_factory, key_client):
    from agents.tasks import relay_run_dispatch_task

    _mock_agent()
    before = _start_runs(key_client, "faults", 3)  # their messages wait in Redis: no worker yet
    redis_broker.kill()
    during = _start_runs(key_client, "faults", 3)  # 202, not 500: the relay sends them later
    assert Run.objects.filter(id__in=during, dispatched_at__isnull=True).count() == 3
    redis_broker.start()  # empty: the messages of `before` are gone

    worker = worker_factory(
        REDIS_URL=redis_broker.url, AGENT_RUN_DISPATCH_STALE_SECONDS="1", AGENT_RUN_DISPATCH_GRACE_SECONDS="0"
    )
    ids = before + during

    def relayed_and_finished() -> bool:
        relay_run_dispatch_task.delay()  # what beat sends every AGENT_RUN_DISPATCH_RELAY_SECONDS
        time.sleep(0.5)
        return all_finished(ids)

    wait_until(relayed_and_finished, timeout=60, what="the relay to send the runs", log=worker.log)
    runs = list(Run.objects.filter(id__in=ids))
    assert {r.status for r in runs} == {RunStatus.SUCCEEDED}, [(r.status, r.error_code) for r in runs]
    assert {r.attempts for r in runs} == {1}


@FULL_STACK
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_reaper_is_not_held_up_by_a_backlog_of_runs(worker_factory, fake_openai, user):
    from agents.tasks import reap_stale_runs_task
    from tests.support.fixtures import create_endpoint_for_fake_server

    fake_openai.latency = 0.5
    name = f"fake-{uuid.uuid4().hex[:8]}"
    create_endpoint_for_fake_server(fake_openai, name=name)
    slow = _mock_agent("slow", model_endpoint=name)
    worker = worker_factory(concurrency=1)
    backlog = [services.run_start(agent=slow, input=f"question {i}", user=user).id for i in range(30)]  # ~15 s

    lost = services.run_create(agent=_mock_agent(), input="was running on a dead worker", user=user)
    max_attempts = django_settings.AGENT_RUN_MAX_ATTEMPTS
    Run.objects.filter(id=lost.id).update(
        status=RunStatus.RUNNING, attempts=max_attempts, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    reap_stale_runs_task.delay()  # what beat sends every 30 s: to the maintenance queue
    wait_until(
        lambda: Run.objects.filter(id=lost.id, status=RunStatus.FAILED).exists(),
        timeout=60,
        what="the reaper",
        log=worker.log,
    )
    assert Run.objects.get(id=lost.id).error_code == "RUN_WORKER_LOST"
    still_queued = Run.objects.filter(id__in=backlog, status=RunStatus.QUEUED).count()
    assert still_queued >= 10, still_queued  # reaped while the backlog is still waiting, not after it


# --- the services, on every backend ---------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch, settings):
    """Runs go to a broker (not in-process); the task ids of the runs sent are recorded instead of published."""
    from agents.tasks import run_execute_task

    settings.CELERY_TASK_ALWAYS_EAGER = False
    calls: list[str] = []
    monkeypatch.setattr(
        run_execute_task, "apply_async", lambda args=None, kwargs=None, task_id=None, **_: calls.append(args[0])
    )
    return calls


@pytest.fixture
def broker_down(monkeypatch, settings):
    from agents.tasks import run_execute_task

    settings.CELERY_TASK_ALWAYS_EAGER = False

    def refuse(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(run_execute_task, "apply_async", refuse)


@pytest.mark.django_db
def test_a_run_accepted_while_the_broker_is_down_is_queued_202_and_the_relay_sends_it_later(
    broker_down, key_client, django_capture_on_commit_callbacks, monkeypatch, settings
):
    from agents.tasks import run_execute_task

    _mock_agent()
    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post(RUNS_URL.format(slug="faults"), {"input": "hello"}, format="json")
    assert response.status_code == 202, response.content[:500]
    assert response.json()["status"] == "queued"
    run = Run.objects.get(id=response.json()["id"])
    assert run.status == RunStatus.QUEUED and run.dispatched_at is None  # awaits dispatch

    calls: list[str] = []
    monkeypatch.setattr(run_execute_task, "apply_async", lambda args=None, **_: calls.append(args[0]))
    assert services.runs_dispatch_stale() == {"sent": 0, "failed": 0}  # within its grace: the broker may be back
    later = timezone.now() + timedelta(seconds=settings.AGENT_RUN_DISPATCH_GRACE_SECONDS + 1)
    assert services.runs_dispatch_stale(now=later) == {"sent": 1, "failed": 0}
    assert calls == [str(run.id)]
    run.refresh_from_db()
    assert run.dispatched_at == later


@pytest.mark.django_db(transaction=True)
def test_waiting_for_a_run_the_broker_refused_answers_at_once_queued(broker_down, user):
    run = services.run_start(agent=_mock_agent(), input="and wait", user=user, wait=True, wait_seconds=60)
    assert run.status == RunStatus.QUEUED and run.dispatched_at is None


@pytest.mark.django_db
def test_the_relay_stops_at_a_failed_send_and_leaves_the_runs_awaiting_dispatch(broker_down, user):
    agent = _mock_agent()
    runs = [services.run_create(agent=agent, input=f"hello {i}", user=user) for i in range(3)]
    later = timezone.now() + timedelta(minutes=5)
    assert services.runs_dispatch_stale(now=later) == {"sent": 0, "failed": 1}
    first = min(runs, key=lambda r: r.created_at)
    assert Run.objects.get(id=first.id).dispatched_at is None  # due at the next pass
    assert Run.objects.filter(dispatched_at__isnull=False).count() == 2  # not touched


@pytest.mark.django_db
def test_the_relay_sends_a_queued_unclaimed_run_once_per_window_not_on_every_pass(sent, user, settings):
    settings.AGENT_RUN_DISPATCH_STALE_SECONDS = 30
    run = services.run_create(agent=_mock_agent(), input="hello", user=user)
    claimed = services.run_create(agent=_mock_agent("other"), input="hello", user=user)
    Run.objects.filter(id=claimed.id).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    t0 = Run.objects.get(id=run.id).dispatched_at

    passes = [t0 + timedelta(seconds=s) for s in (10, 20, 31, 41, 51, 60, 62, 70)]  # a pass every ~10 s
    reports = [services.runs_dispatch_stale(now=moment)["sent"] for moment in passes]
    assert reports == [0, 0, 1, 0, 0, 0, 1, 0]  # at 31 s and again one window later, at 62 s
    assert sent == [str(run.id), str(run.id)]  # never the claimed run
    run.refresh_from_db()
    assert run.dispatched_at == passes[6] and run.celery_task_id


@pytest.mark.django_db
def test_the_relay_does_nothing_on_the_embedded_default(user, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    services.run_create(agent=_mock_agent(), input="hello", user=user)
    assert services.runs_dispatch_stale(now=timezone.now() + timedelta(hours=1)) == {"sent": 0, "failed": 0}


@pytest.mark.django_db
def test_the_reaper_requeues_a_stale_run_once_and_leaves_queued_runs_to_the_relay(
    sent, user, django_capture_on_commit_callbacks
):
    agent = _mock_agent()
    stale = services.run_create(agent=agent, input="lost", user=user)
    Run.objects.filter(id=stale.id).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    old_queued = services.run_create(agent=agent, input="queued long ago", user=user)
    Run.objects.filter(id=old_queued.id).update(created_at=timezone.now() - timedelta(hours=1))

    reports = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            reports.append(services.runs_reap_stale(stale_after=timedelta(seconds=60)))
    assert reports == [{"requeued": 1, "failed": 0}, {"requeued": 0, "failed": 0}, {"requeued": 0, "failed": 0}]
    assert sent == [str(stale.id)]  # the re-queued run, once; the old queued run is not the reaper's to re-send
    stale.refresh_from_db()
    assert stale.status == RunStatus.QUEUED and stale.dispatched_at is not None


@pytest.fixture
def retried_as_in_a_worker(settings, monkeypatch):
    """Task errors are retried as in a worker; `apply()` runs the retries inline, without the countdown."""
    from agent_platform.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)


@pytest.mark.django_db
def test_a_run_task_retries_when_the_database_fails_before_the_claim(
    make_agent, scripted, user, monkeypatch, retried_as_in_a_worker
):
    from agents.tasks import run_execute_task

    run = services.run_create(agent=make_agent(), input="hello", user=user)
    scripted.queue_response(content="done")
    real_claim = services.run_claim
    failures = iter([OperationalError("connection refused"), OperationalError("connection refused")])

    def flaky_claim(**kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_claim(**kwargs)

    monkeypatch.setattr(execution, "run_claim", flaky_claim)  # as the run task calls it
    result = run_execute_task.apply(args=[str(run.id)])
    assert result.get() == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 1 and run.output == "done"


@pytest.mark.django_db
def test_an_error_after_the_claim_does_not_execute_the_run_a_second_time(
    make_agent, scripted, user, monkeypatch, retried_as_in_a_worker
):
    from agents.tasks import run_execute_task

    run = services.run_create(agent=make_agent(), input="hello", user=user)
    scripted.queue_response(content="first")
    scripted.queue_response(content="second")
    real_finish = services.run_finish
    failures = iter([OperationalError("server closed the connection unexpectedly")])

    def flaky_finish(**kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_finish(**kwargs)

    monkeypatch.setattr(execution, "run_finish", flaky_finish)
    assert run_execute_task.apply(args=[str(run.id)]).get() is None  # the retry found the run claimed
    assert len(scripted.call_history) == 1  # the model was asked once
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1  # the reaper's, once its heartbeat is stale


@pytest.mark.django_db
def test_in_process_a_database_error_reaches_the_caller_at_once_without_retries(make_agent, user, monkeypatch):
    from agents.tasks import run_execute_task

    run = services.run_create(agent=make_agent(), input="hello", user=user)
    calls = []

    def broken_claim(**kwargs):
        calls.append(kwargs)
        raise OperationalError("database is locked")

    monkeypatch.setattr(execution, "run_claim", broken_claim)
    with pytest.raises(OperationalError):
        run_execute_task.apply(args=[str(run.id)], throw=True)
    assert len(calls) == 1


def test_the_reaper_and_the_relay_are_routed_to_the_maintenance_queue_and_scheduled():
    from agent_platform.celery import app, maintenance_queue, maintenance_queue_for

    for name in ("agents.reap_stale_runs", "agents.relay_run_dispatch"):
        assert app.amqp.router.route({}, name)["queue"].name == maintenance_queue()
    assert app.amqp.router.route({}, "agents.run_execute")["queue"].name == app.conf.task_default_queue
    assert maintenance_queue_for("celery") == "maintenance"
    assert maintenance_queue_for("runs") == "runs-maintenance"
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["agents.relay_run_dispatch"]["schedule"] <= 15
    assert schedule["agents.reap_stale_runs"]["schedule"] <= 30
