"""Budget alerts: recorded once per threshold and period, sent by e-mail and webhook."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from costs.models import Budget, BudgetAlert

logger = logging.getLogger("costs")


def budget_alerts_check(*, budget_ids: list[int]) -> list[BudgetAlert]:
    """Record an alert for every threshold a budget's spend has reached in its current period, once (a unique
    constraint makes a second recording a no-op even from another process), and send each new one."""
    created: list[BudgetAlert] = []
    for budget in Budget.objects.filter(id__in=budget_ids, is_active=True):
        if not budget.thresholds or budget.limit <= 0:
            continue
        percent = budget.spent / budget.limit * 100
        for threshold in sorted({int(t) for t in budget.thresholds}):
            if percent < threshold:
                break
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(
                        budget=budget,
                        period_start=budget.period_start,
                        threshold=threshold,
                        spent=budget.spent,
                        limit=budget.limit,
                    )
            except IntegrityError:
                continue
            created.append(alert)
            logger.warning(
                "budget %s reached %s%% (%s of %s %s)",
                budget.name,
                threshold,
                budget.spent,
                budget.limit,
                budget.currency,
            )
    if created:
        from costs.tasks import send_budget_alert

        for alert in created:
            transaction.on_commit(partial(send_budget_alert.delay, alert.pk))
    return created


def budget_alert_send(*, alert_id: int) -> BudgetAlert | None:
    """E-mail the budget's addresses and POST JSON to its webhook; failures are logged, never raised."""
    import httpx

    alert = BudgetAlert.objects.select_related("budget").filter(pk=alert_id).first()
    if alert is None:
        return None
    budget = alert.budget
    subject = f"Budget '{budget.name}' reached {alert.threshold}%"
    body = (
        f"Budget '{budget.name}' ({budget.scope} {budget.scope_id}, {budget.period}) has spent {alert.spent} of "
        f"{alert.limit} {budget.currency} ({alert.threshold}% threshold) "
        f"in the period from {alert.period_start:%Y-%m-%d}."
    )
    recipients = [a.strip() for a in budget.alert_emails.split(",") if a.strip()]
    if recipients:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
            alert.email_sent = True
        except Exception:
            logger.exception("budget alert %s: e-mail failed", alert.pk)
    if budget.webhook_url:
        payload = {
            "event": "budget.threshold_reached",
            "budget_id": budget.pk,
            "budget": budget.name,
            "scope": budget.scope,
            "scope_id": budget.scope_id,
            "period": budget.period,
            "period_start": alert.period_start.isoformat(),
            "threshold": alert.threshold,
            "spent": str(alert.spent),
            "limit": str(alert.limit),
            "currency": budget.currency,
        }
        try:
            response = httpx.post(budget.webhook_url, json=payload, timeout=5.0)
            alert.webhook_status = str(response.status_code)
            if response.status_code >= 400:
                logger.warning("budget alert %s: webhook answered %s", alert.pk, response.status_code)
        except httpx.HTTPError as exc:
            alert.webhook_status = f"error: {type(exc).__name__}"[:64]
            logger.warning("budget alert %s: webhook failed: %s", alert.pk, type(exc).__name__)
    alert.save(update_fields=["email_sent", "webhook_status"])
    return alert
