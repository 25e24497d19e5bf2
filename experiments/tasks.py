"""Celery entry points of the experiments app (thin: ids in, a service call)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="experiments.run_experiment", acks_late=True, reject_on_worker_lost=True)
def run_experiment(experiment_id: int, run_token: str) -> str:
    from experiments.runner import run_experiment as run

    return run(experiment_id=experiment_id, run_token=run_token)


@shared_task(name="experiments.resume_stale")
def resume_stale() -> list[int]:
    from experiments.services import experiments_resume_stale

    return experiments_resume_stale()
