"""`.ci/run` gives every run its own test database and Redis database, and drops the test database when it ends,
failed or not: two CI runs on one machine cannot collide. `make` is replaced by a script that records what it was
given, creates the database the suite would create, and fails."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg
import pytest

from tests.test_settings_and_startup import ROOT

PG = "postgres://postgres@127.0.0.1:5432/test"

FAKE_MAKE = """#!/usr/bin/env bash
echo "$TEST_DATABASE_NAME $REDIS_URL" >> "$CI_PROBE_FILE"
psql "$DATABASE_URL" -q -c "CREATE DATABASE \\"$TEST_DATABASE_NAME\\"" >/dev/null
exit 3
"""


def reachable() -> bool:
    try:
        psycopg.connect(PG, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return shutil.which("psql") is not None


pytestmark = pytest.mark.skipif(not reachable(), reason="needs PostgreSQL on 127.0.0.1:5432 and psql")


def database_exists(name: str) -> bool:
    with psycopg.connect(PG, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def test_each_ci_run_has_its_own_databases_and_drops_its_test_database_even_when_it_fails(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"make": FAKE_MAKE, "chromium": "#!/bin/sh\n", "docker-compose": "#!/bin/sh\n"}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    probe = tmp_path / "probe"
    env = {k: v for k, v in os.environ.items() if k not in {"TEST_DATABASE_NAME", "CI_REDIS_URL"}}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", CI_PROBE_FILE=str(probe), CI_DATABASE_URL=PG)

    for _ in range(2):
        done = subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stderr  # the suite's failure is CI's failure

    runs = [line.split() for line in probe.read_text().splitlines()]
    assert len(runs) == 2
    (first_db, first_redis), (second_db, second_redis) = runs
    assert first_db != second_db and first_db.startswith("test_ci_")
    assert first_redis.startswith("redis://127.0.0.1:6379/") and second_redis.startswith("redis://127.0.0.1:6379/")
    assert not database_exists(first_db) and not database_exists(second_db)
