"""The asynchronous commit of a run's hot-path bookkeeping on PostgreSQL (create, claim, heartbeats, events)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def async_commit_mode() -> str:
    """synchronous_commit for the run's hot-path bookkeeping: "off" unless AGENT_RUN_ASYNC_COMMIT is off."""
    return "off" if settings.AGENT_RUN_ASYNC_COMMIT else "on"


def async_commit() -> None:
    """Inside a transaction on PostgreSQL: do not wait for the WAL flush at commit (~4 ms here on every commit).

    Used for the run's hot-path bookkeeping (creating and claiming a run, heartbeats, streamed events). A database
    crash may lose the last fraction of a second of these, never corrupt them; the reaper re-dispatches a queued run
    that nobody claimed. Turn off with AGENT_RUN_ASYNC_COMMIT=false. Outcomes (run_finish) always commit durably."""
    if settings.USING_POSTGRES and async_commit_mode() == "off":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
