"""Celery entry points: thin, taking ids."""

from __future__ import annotations

from celery import shared_task

REAPER_TASK = "agents.reap_stale_runs"  # scheduled every 30 s by AgentsConfig.ready()


@shared_task(name="agents.run_execute", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_execute_task(run_id: str, opens_conversation: bool = False) -> str | None:
    """Execute a queued run. A redelivered task for a run that is no longer queued does nothing."""
    from agents.services import run_execute

    run = run_execute(run_id=run_id, opens_conversation=opens_conversation)
    return run.status if run is not None else None


@shared_task(name=REAPER_TASK, ignore_result=True)
def reap_stale_runs_task() -> dict:
    """Re-queue or fail runs whose worker stopped sending heartbeats."""
    from agents.services import runs_reap_stale

    return runs_reap_stale()
