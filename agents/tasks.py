"""Celery entry points: thin, taking ids."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_platform.celery import DISPATCH_RELAY_TASK, REAPER_TASK, ObservedTask

# What a run task retries on instead of being acknowledged: the database or the broker out of reach.
RETRIED_ERRORS = (
    DatabaseOperationalError,
    DatabaseInterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
)


class RetriedInWorkerTask(ObservedTask):
    """Retries (autoretry_for) happen in a worker only: executed in-process (the embedded default, eager), the
    error reaches the caller at once instead of being retried inline, without the backoff."""

    def retry(self, *args, exc=None, **kwargs):
        if self.request.is_eager and settings.CELERY_TASK_ALWAYS_EAGER and exc is not None:
            raise exc
        return super().retry(*args, exc=exc, **kwargs)


@shared_task(
    name="agents.run_execute",
    base=RetriedInWorkerTask,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=RETRIED_ERRORS,
    retry_backoff=True,
    retry_backoff_max=settings.AGENT_RUN_RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=settings.AGENT_RUN_RETRY_MAX,
)
def run_execute_task(run_id: str, **_sent_by_older_versions) -> str | None:
    """Execute a queued run. A redelivered task (or a retry) for a run that is no longer queued does nothing: the
    claim is the guard, so an error after the claim never executes the run twice. (Messages sent before an upgrade
    may carry an `opens_conversation` hint; it is ignored.)"""
    from agents.services import run_execute

    run = run_execute(run_id=run_id)
    return run.status if run is not None else None


@shared_task(name=REAPER_TASK, ignore_result=True)
def reap_stale_runs_task() -> dict:
    """Re-queue or fail runs whose worker stopped sending heartbeats (maintenance queue)."""
    from agents.services import runs_reap_stale

    return runs_reap_stale()


@shared_task(name=DISPATCH_RELAY_TASK, ignore_result=True)
def relay_run_dispatch_task() -> dict:
    """Send again the queued runs whose task was not sent, or not taken, within the window (maintenance queue)."""
    from agents.services import runs_dispatch_stale

    return runs_dispatch_stale()
