"""What the costs app reports to `/metrics` at scrape time: how much of each active budget is spent."""

from __future__ import annotations

from agent_platform.observability.metrics import ScrapeGauge
from costs.models import Budget

MAX_BUDGETS = 1000  # a scrape stays small whatever the number of budgets


def budget_gauges() -> list[ScrapeGauge]:
    rows = Budget.objects.filter(is_active=True, limit__gt=0).order_by("id")
    samples = [
        (
            {"budget": budget.name, "scope": budget.scope, "scope_id": str(budget.scope_id), "period": budget.period},
            float(budget.spent / budget.limit),
        )
        for budget in rows.only("name", "scope", "scope_id", "period", "spent", "limit")[:MAX_BUDGETS]
    ]
    return [ScrapeGauge("agent_platform_budget_spend_ratio", "Spent share of each active budget (1 = limit)", samples)]
