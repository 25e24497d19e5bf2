"""Runs whose worker died: re-queued once, then failed with RUN_WORKER_LOST."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent_platform.observability.metrics import note_run_requeued
from agents.models import Run, RunStatus
from agents.services.dispatch import run_dispatch
from agents.services.events import event_publish_sync, events_store
from agents.services.lifecycle import ATTEMPT_SEQ_STRIDE

logger = logging.getLogger("agents.runs")


_last_inline_reap = 0.0


def runs_reap_inline() -> None:
    """On the embedded default no beat runs the reaper: reap from the request path, at most once a minute.

    Runs left "running" by a process that died (a restarted server) are failed with RUN_WORKER_LOST, not re-run
    inside somebody else's request."""
    global _last_inline_reap
    if not settings.CELERY_TASK_ALWAYS_EAGER or time.monotonic() - _last_inline_reap < 60:
        return
    _last_inline_reap = time.monotonic()
    try:
        runs_reap_stale(max_attempts=1)
    except Exception:
        logger.warning("inline reaping of stale runs failed", exc_info=True)


def runs_reap_stale(*, stale_after: timedelta | None = None, max_attempts: int | None = None) -> dict[str, int]:
    """Runs whose worker died (heartbeat older than `stale_after`): re-queue once, then fail with RUN_WORKER_LOST.

    Scheduled by beat on the maintenance queue (agent_platform.celery), so a backlog of runs does not delay it."""
    stale_after = stale_after or timedelta(seconds=float(settings.AGENT_RUN_STALE_SECONDS))
    max_attempts = max_attempts or int(settings.AGENT_RUN_MAX_ATTEMPTS)
    cutoff = timezone.now() - stale_after
    report = {"requeued": 0, "failed": 0}
    # Queued runs nobody claimed (a message lost with a broker restart) are the dispatch relay's: see
    # runs_dispatch_stale. A run re-queued here is sent once, and then the relay's window applies to it.
    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("agent"):
        if run.attempts < max_attempts:
            with transaction.atomic():
                taken = Run.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                    status=RunStatus.QUEUED, heartbeat_at=None, dispatched_at=timezone.now()
                )
                if taken:
                    run_dispatch(run=run)
            if taken:
                logger.warning("run %s: worker lost; re-queued (attempt %d)", run.id, run.attempts + 1)
                report["requeued"] += 1
                note_run_requeued()
            continue
        message = f"The worker executing this run stopped responding {run.attempts} times; giving up."
        with transaction.atomic():
            taken = Run.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.FAILED, error_code="RUN_WORKER_LOST", error_message=message, finished_at=timezone.now()
            )
            if taken:
                seq = run.attempts * ATTEMPT_SEQ_STRIDE + 1
                event = {"seq": seq, "type": "error", "data": {"code": "RUN_WORKER_LOST", "message": message}}
                events_store(run.id, [event])
        if taken:
            event_publish_sync(run.id, event)
            report["failed"] += 1
    return report
