"""Celery entry points of the costs app (thin: they call services)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="costs.import_prices")
def import_prices() -> dict:
    from costs.services import prices_import_litellm

    return vars(prices_import_litellm())


@shared_task(name="costs.refresh_usage_rollups")
def refresh_usage_rollups(days_back: int = 3) -> dict:
    from costs.services import budget_release_stale, usage_rollups_refresh

    days = usage_rollups_refresh(days_back=days_back)
    released = budget_release_stale()
    return {"days": [d.isoformat() for d in days], "released_reservations": released}


@shared_task(name="costs.send_budget_alert", ignore_result=True)
def send_budget_alert(alert_id: int) -> None:
    from costs.services import budget_alert_send

    budget_alert_send(alert_id=alert_id)
