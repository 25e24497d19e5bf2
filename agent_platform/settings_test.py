"""Settings of the test suite: the project's settings, without a developer's .env, with the observer's timer off.

The timer is off because a test's records must land inside the test's own transaction (they are written at the
request's or task's end instead). Processes the tests start (daphne, a Celery worker) use the project's settings,
with the connection pool. The test process itself runs without it: its tests start dozens of threads at once (to
race budgets, flushes and claims) that hold a connection each for the test's length, where a pool of 10 would make
them wait; tests/test_db_pool.py builds a pool in this process to test it.
With Redis, the mock models' scripts and call logs live in the shared cache, where the test worker sees them too.
"""

import os

os.environ["DJANGO_READ_DOT_ENV"] = "false"

from agent_platform.settings import *  # noqa: F403

OBSERVER_FLUSH_SECONDS = float(os.environ.get("OBSERVER_FLUSH_SECONDS", "0"))

if DB_POOL_ENABLED:  # noqa: F405
    DATABASES["default"]["OPTIONS"].pop("pool")  # noqa: F405
    DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
    DB_POOL_ENABLED = False

if REDIS_URL:  # noqa: F405
    LLM_MOCK_STORE = os.environ.get("LLM_MOCK_STORE", "cache")
