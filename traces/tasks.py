"""Celery entry points of the traces app (thin: they call services)."""

from __future__ import annotations

from celery import shared_task

from agent_platform.observability.hooks import SpanKind
from agent_platform.observability.spans import start_span


@shared_task(name="traces.purge_expired")
def purge_expired(older_than_days: int | None = None) -> dict:
    """Retention: delete traces older than TRACE_RETENTION_DAYS (scheduled daily by django-celery-beat)."""
    from traces.services import traces_purge

    with start_span(kind=SpanKind.WORKFLOW_STEP, name="traces.purge_expired") as span:
        deleted = traces_purge(older_than_days=older_than_days)
        span.set_output({"deleted_traces": deleted})
    return {"deleted_traces": deleted}
