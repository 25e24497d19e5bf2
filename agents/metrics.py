"""What the agents app reports to `/metrics` at scrape time: the run queue's depth and its oldest run's age."""

from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone

from agent_platform.observability.metrics import ScrapeGauge
from agents.models import Run, RunStatus


def run_queue_gauges() -> list[ScrapeGauge]:
    row = Run.objects.filter(status=RunStatus.QUEUED).aggregate(count=Count("id"), oldest=Min("created_at"))
    age = (timezone.now() - row["oldest"]).total_seconds() if row["oldest"] else 0.0
    return [
        ScrapeGauge("agent_platform_runs_queued", "Runs waiting for a worker", [({}, row["count"])]),
        ScrapeGauge(
            "agent_platform_oldest_queued_run_age_seconds", "Age of the oldest run waiting for a worker", [({}, age)]
        ),
    ]
