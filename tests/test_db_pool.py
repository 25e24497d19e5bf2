"""Database connections stay bounded under concurrency: on PostgreSQL each process draws from a psycopg_pool pool
(Django's OPTIONS["pool"]); a request that finds the pool exhausted waits DB_POOL_TIMEOUT, then answers 503
SERVICE_UNAVAILABLE (never 500), and the next request after a connection comes back answers 200."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection, connections

from tests.test_api_conventions import assert_envelope

APPLICATION_NAME = f"pool-test-{os.getpid()}"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.USING_POSTGRES, reason="the connection pool is used on PostgreSQL only"),
]


@pytest.fixture
def small_pool():
    """This process's connections drawn from a pool of 2 with a 0.5 s wait (the test settings run this process
    without one; daphne and the workers use DB_POOL_*), then as configured again."""
    settings_dict = connection.settings_dict
    options, conn_max_age = settings_dict["OPTIONS"], settings_dict["CONN_MAX_AGE"]
    configured = options.get("pool")
    connections.close_all()
    connection.close_pool()
    options["pool"] = {"min_size": 0, "max_size": 2, "timeout": 0.5}
    options["application_name"] = APPLICATION_NAME  # tells this process's sessions from the test worker's
    settings_dict["CONN_MAX_AGE"] = 0  # Django returns a pooled connection at the end of each request
    yield connection.pool
    connections.close_all()
    connection.close_pool()
    if configured is None:
        options.pop("pool")
    else:
        options["pool"] = configured
    del options["application_name"]
    settings_dict["CONN_MAX_AGE"] = conn_max_age


def sessions_of_this_process() -> int:
    import psycopg

    params = {k: v for k, v in connection.get_connection_params().items() if k in {"host", "port", "user", "password"}}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION_NAME]
        ).fetchone()[0]


def in_a_new_thread(fn):
    """Call `fn` in a thread of its own, as daphne serves each request: that thread draws its own connection."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        finally:
            connections.close_all()  # what Django does at the end of a request: the connection goes back

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    return result["value"]


def test_an_exhausted_pool_answers_503_with_a_code_then_recovers(small_pool, key_client):
    connections.close_all()  # the fixtures' own connection goes back first
    held = [small_pool.getconn(), small_pool.getconn()]  # every connection the process may open is taken
    try:
        response = in_a_new_thread(lambda: key_client.get("/api/v1/agents/"))
        assert response.status_code == 503, response.content[:300]
        error = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
        assert error["details"]["service"] == "database"
        assert response["Retry-After"]
    finally:
        for held_connection in held:
            small_pool.putconn(held_connection)

    response = in_a_new_thread(lambda: key_client.get("/api/v1/agents/"))
    assert response.status_code == 200, response.content[:300]


def test_concurrent_requests_share_the_pool_and_never_open_more_sessions_than_it_holds(small_pool, key_client):
    connections.close_all()
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sessions_of_this_process())

    watcher = threading.Thread(target=watch)
    watcher.start()

    def call(_: int) -> int:
        try:
            return key_client.get("/api/v1/agents/").status_code
        finally:
            connections.close_all()

    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            statuses = list(executor.map(call, range(40)))
    finally:
        stop.set()
        watcher.join()
    # With 8 callers and 2 connections, callers wait for one (0.5 s at most each time): all of them are served.
    assert statuses.count(200) + statuses.count(503) == 40 and statuses.count(200) > 0
    assert 0 < peak <= 2, f"{peak} sessions for a pool of 2"


def test_every_pooled_connection_reaches_the_test_database(small_pool):
    # A pool built before the test database existed (the schema test loads the API at collection) would serve the
    # real database instead: conftest drops such a pool before the test database is created.
    def database_of_a_new_connection() -> str:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT current_database()")
            return cursor.fetchone()[0]

    assert in_a_new_thread(database_of_a_new_connection) == connection.settings_dict["NAME"]
    assert connection.settings_dict["NAME"].startswith("test")
