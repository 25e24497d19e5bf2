"""Writes of the costs app, one module per concern, behind this facade (`from costs import services`):

- `prices`: the price table (manual rows, the litellm sync, the import at migrate)
- `records`: cost records (priced per attempt, stored with their budget settlement, recomputed)
- `rollups`: daily usage rollups
- `budgets`: budgets, reservations before a call and settlement after it
- `alerts`: budget alerts (recorded once per threshold, sent by e-mail and webhook)
"""

from costs.services.alerts import budget_alert_send, budget_alerts_check
from costs.services.budgets import (
    budget_delete,
    budget_exceeded,
    budget_release,
    budget_release_stale,
    budget_reserve,
    budget_reserve_for_estimate,
    budget_save,
    budget_settle,
    budgets_delete,
    estimate_cost,
    period_start_for,
    price_unknown,
)
from costs.services.prices import (
    FIRST_IMPORT_FROM,
    LITELLM_MAP_FILE,
    ImportResult,
    litellm_bundled_cost_map,
    price_delete,
    price_save,
    prices_import_litellm,
    prices_import_on_migrate,
)
from costs.services.records import (
    PRICED_FIELDS,
    cost_record_build,
    cost_record_start,
    cost_records_from_spans,
    cost_records_recompute,
    cost_records_write,
    price_llm_call,
)
from costs.services.rollups import ROLLUP_KEYS, usage_rollup_build, usage_rollups_refresh

__all__ = [
    "FIRST_IMPORT_FROM",
    "LITELLM_MAP_FILE",
    "PRICED_FIELDS",
    "ROLLUP_KEYS",
    "ImportResult",
    "budget_alert_send",
    "budget_alerts_check",
    "budget_delete",
    "budget_exceeded",
    "budget_release",
    "budget_release_stale",
    "budget_reserve",
    "budget_reserve_for_estimate",
    "budget_save",
    "budget_settle",
    "budgets_delete",
    "cost_record_build",
    "cost_record_start",
    "cost_records_from_spans",
    "cost_records_recompute",
    "cost_records_write",
    "estimate_cost",
    "litellm_bundled_cost_map",
    "period_start_for",
    "price_delete",
    "price_llm_call",
    "price_save",
    "price_unknown",
    "prices_import_litellm",
    "prices_import_on_migrate",
    "usage_rollup_build",
    "usage_rollups_refresh",
]
