"""Fixtures every test can use: users, API clients authenticated by key, JWT and session, a real Celery worker."""

from __future__ import annotations

import os
import secrets

import pytest
from django.conf import settings

from tests.support.worker import CeleryWorker, through_the_worker, worker_environment

pytest_plugins = ["tests.support.fixtures"]


def pytest_configure(config) -> None:
    # Concurrent test runs on one Redis (a developer and CI, or two sessions) must not share keys or queues.
    run_id = secrets.token_hex(4)
    prefix = f"test{run_id}"
    settings.CACHES["default"]["KEY_PREFIX"] = prefix
    if "CONFIG" in settings.CHANNEL_LAYERS["default"]:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{prefix}:asgi"
    settings.CELERY_TASK_DEFAULT_QUEUE = f"{prefix}-celery"
    from agent_platform.celery import app

    app.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    os.environ["AGENT_PLATFORM_TEST_RUN"] = prefix


@pytest.hookimpl(tryfirst=True)  # before pytest-django orders the tests by their kind of database use
def pytest_collection_modifyitems(config, items) -> None:
    """A test marked `runs` goes through the real worker on the full stack: its database is transactional (the
    worker sees only committed rows) and it uses the `celery_worker` fixture. `in_process` keeps it in-process."""
    for item in items:
        if item.get_closest_marker("worker") or not through_the_worker(item):
            continue
        existing = item.get_closest_marker("django_db")
        options = dict(existing.kwargs) if existing else {}
        item.add_marker(pytest.mark.django_db(**{**options, "transaction": True}), append=False)
        if "celery_worker" not in item.fixturenames:
            item.fixturenames.append("celery_worker")  # set up last: idle again before the database is flushed


def pytest_unconfigure(config) -> None:
    # litellm leaves a logging task pending on a closed loop; asyncio reports it at interpreter exit, after
    # pytest's summary. It is noise, not a failure.
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@pytest.fixture(autouse=True)
def _discard_buffered_records():
    """Records buffered by the sinks belong to the test that made them; drop what a test leaves behind, so a later
    flush never writes rows that point at another test's (rolled-back) data."""
    from agent_platform.observability.hooks import hub

    def discard() -> None:
        for observer in hub.observers:
            buffer = getattr(observer, "buffer", None)
            if buffer is not None:
                buffer.take()

    discard()
    yield
    discard()


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    from agent_platform.api.throttling import local_windows
    from agent_platform.cache_safe import reset_outages

    if "locmem" in settings.CACHES["default"]["BACKEND"]:
        cache.clear()
    reset_outages()  # an outage one test made does not carry into the next
    local_windows.clear()
    yield


@pytest.fixture(autouse=True)
def _rows_a_worker_cached(request):
    """A worker process outlives each test's database: after a flush, the rows of the data migrations it may have
    cached (the mock's demo price) come back with their ids, and the price and budget version stamps move on, so
    that it reloads what it holds of the tables the flush emptied."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    from tests.support.sinks import _mock_price_id, mock_price_restore

    if through_the_worker(request.node) or not _mock_price_id:  # the first test sees the migrated row: its id
        request.getfixturevalue("_django_db_helper")
        mock_price_restore()
    if through_the_worker(request.node):
        from costs.budgets import bump_budget_version
        from costs.pricing import bump_price_version

        bump_price_version()
        bump_budget_version()
    yield


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="correct-horse-battery", email="a@x.io")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="correct-horse-battery", email="b@x.io")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="correct-horse-battery", email="r@x.io")


@pytest.fixture
def issued_key(user):
    from agent_platform.accounts.services import api_key_create

    return api_key_create(user=user, name="test key")


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def key_client(issued_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued_key.raw_key}")
    return client


@pytest.fixture
def jwt_client(user):
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def session_client(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=False)
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """Before the test database is created: drop any connection pool already made. Django builds a pool from the
    settings of the moment and closes it when it clones or destroys a test database, not when it creates one, so a
    pool made earlier (anything that touched the database at collection) would go on serving the real database."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
    for connection in connections.all():
        if getattr(connection, "close_pool", None) is not None:
            connection.close_pool()


@pytest.fixture(scope="session")
def _celery_worker_process(django_db_setup, django_db_blocker):
    if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("needs REDIS_URL (a real broker) for a real Celery worker")
    if not settings.USING_POSTGRES:
        pytest.skip("a worker process cannot share an SQLite test database; needs DATABASE_URL (PostgreSQL)")
    worker = CeleryWorker(env=worker_environment())
    worker.start()
    CeleryWorker.session = worker
    yield worker
    CeleryWorker.session = None
    worker.stop()


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup, django_db_blocker):
    """Connections that threads of this process (async tests, sync_to_async) or a stopped worker leave open
    would keep the test database from being dropped at the end of the run; end them first."""
    yield
    if not settings.USING_POSTGRES:
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def celery_worker(_celery_worker_process):
    """A real `celery worker` process on Redis, sharing the test database. Skips without REDIS_URL.

    One process serves the whole session; after each test it must be idle before the database is reset."""
    yield _celery_worker_process
    _celery_worker_process.wait_idle()
