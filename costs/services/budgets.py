"""Budgets: saved, their periods, reservations before a call (hard limits) and settlement after it."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agent_platform.observability.hooks import LLMCallEstimate
from costs.budgets import budget_index, bump_budget_version
from costs.models import Budget, BudgetReservation, CostRecord
from costs.pricing import Tokens, compute_cost, price_cache
from costs.services.alerts import budget_alerts_check
from costs.validation import model_validate

logger = logging.getLogger("costs")


ZERO = Decimal(0)


@transaction.atomic
def budget_save(*, budget: Budget) -> Budget:
    model_validate(budget)
    budget.save()
    budget_index.invalidate()
    transaction.on_commit(bump_budget_version)
    return budget


@transaction.atomic
@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    budget.delete()
    transaction.on_commit(bump_budget_version)


@transaction.atomic
def budgets_delete(*, budgets: QuerySet[Budget]) -> int:
    """Delete many budgets at once (the admin's "delete selected"): every process stops applying them at its next
    call."""
    deleted, _ = budgets.delete()
    transaction.on_commit(bump_budget_version)
    return deleted


def period_start_for(budget: Budget, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if budget.period == Budget.Period.DAY:
        return datetime(now.year, now.month, now.day, tzinfo=UTC)
    if budget.period == Budget.Period.MONTH:
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    return budget.period_start


def _roll_period(budget: Budget, now: datetime) -> None:
    """A new day or month starts a new period: spend starts again from zero (in-flight reservations stay)."""
    start = period_start_for(budget, now)
    if budget.period != Budget.Period.TOTAL and start > budget.period_start:
        Budget.objects.filter(pk=budget.pk).update(period_start=start, spent=ZERO)
        budget.period_start, budget.spent = start, ZERO


def estimate_cost(estimate: LLMCallEstimate) -> Decimal | None:
    """What the call may cost at most (its input estimate and its output limit), or None when no price matches."""
    now = timezone.now()
    price = price_cache.price_for(provider=estimate.provider, model=estimate.model, at=now)
    if price is None:  # before refusing the call (PRICE_UNKNOWN): a price saved elsewhere a moment ago counts
        price_cache.recheck()
        price = price_cache.lookup(provider=estimate.provider, model=estimate.model, at=now)
    if price is None:
        return None
    tokens = Tokens(input=estimate.estimated_input_tokens, output=estimate.max_output_tokens)
    return compute_cost(price, tokens)


def price_unknown(estimate: LLMCallEstimate, *, budget_ids: list[int]) -> PlatformError:
    return PlatformError(
        f"No price matches {estimate.provider or '-'}:{estimate.model}, so the hard budgets that apply to this caller "
        f"cannot allow the call; add a price for the model (admin: Costs > Prices).",
        code="PRICE_UNKNOWN",
        details={"provider": estimate.provider, "model": estimate.model, "budget_ids": budget_ids},
    )


def budget_exceeded(budget: Budget, *, estimate: Decimal) -> PlatformError:
    return PlatformError(
        f"Budget '{budget.name}' ({budget.scope} {budget.scope_id}, {budget.period}) would be exceeded: "
        f"{budget.spent + budget.reserved} of {budget.limit} {budget.currency} used, this call needs about {estimate}.",
        code="BUDGET_EXCEEDED",
        details={
            "budget_id": budget.pk,
            "budget": budget.name,
            "scope": budget.scope,
            "period": budget.period,
            "limit": str(budget.limit),
            "spent": str(budget.spent),
            "reserved": str(budget.reserved),
            "estimate": str(estimate),
            "currency": budget.currency,
        },
    )


@transaction.atomic
def budget_reserve(*, attempt_id: str, budget_ids: list[int], amount: Decimal) -> list[int]:
    """Check and reserve `amount` on every given hard budget, atomically: the budget rows are locked
    (`SELECT ... FOR UPDATE`, in id order), so concurrent calls see each other's reservations. Raises
    `BUDGET_EXCEEDED` naming the first budget that cannot take the call (nothing is reserved then)."""
    now = timezone.now()
    budgets = list(
        Budget.objects.select_for_update()
        .filter(id__in=budget_ids, is_active=True, enforcement=Budget.Enforcement.HARD)
        .order_by("id")
    )
    for budget in budgets:
        _roll_period(budget, now)
        used = budget.spent + budget.reserved
        if used >= budget.limit or used + amount > budget.limit:
            raise budget_exceeded(budget, estimate=amount)
    for budget in budgets:
        Budget.objects.filter(pk=budget.pk).update(reserved=F("reserved") + amount)
        BudgetReservation.objects.create(budget=budget, attempt_id=attempt_id, amount=amount)
    return [b.pk for b in budgets]


def budget_reserve_for_estimate(*, estimate: LLMCallEstimate, refresh: bool = True) -> list[int]:
    """Reserve a call's estimated cost on the hard budgets that apply to its caller (none: nothing to do). The
    budget index is checked against the shared version stamp first (unless the caller just did), so a budget just
    changed by another process applies. A model with no price is refused (`PRICE_UNKNOWN`) when a hard budget
    applies: counting it as free would let it spend without limit."""
    if refresh:
        budget_index.refresh()
    entries = budget_index.matching(estimate.caller, hard_only=True)
    if not entries:
        return []
    budget_ids = [e.id for e in entries]
    amount = estimate_cost(estimate)
    if amount is None:
        raise price_unknown(estimate, budget_ids=budget_ids)
    return budget_reserve(attempt_id=estimate.attempt_id, budget_ids=budget_ids, amount=amount)


def budget_settle(*, costs: dict[str, tuple[Decimal, CostRecord]], released_attempts: list[str]) -> list[int]:
    """After calls: release their reservations, add their actual costs to every budget matching their caller,
    and record threshold alerts. `costs` maps attempt id → (cost, record)."""
    attempt_ids = list(costs) + list(released_attempts)
    if not attempt_ids and not costs:
        return []
    budget_index.refresh()
    charges: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for cost, record in costs.values():
        if cost <= 0:
            continue
        caller = _caller_of(record)
        for entry in budget_index.matching(caller):
            charges[entry.id] += cost
    touched: set[int] = set()
    with transaction.atomic():
        reservations = list(BudgetReservation.objects.filter(attempt_id__in=attempt_ids).order_by("budget_id", "id"))
        releases: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for r in reservations:
            releases[r.budget_id] += r.amount
        budget_ids = sorted(set(charges) | set(releases))
        if not budget_ids:
            return []
        now = timezone.now()
        for budget in Budget.objects.select_for_update().filter(id__in=budget_ids).order_by("id"):
            _roll_period(budget, now)
            Budget.objects.filter(pk=budget.pk).update(
                spent=F("spent") + charges.get(budget.pk, ZERO),
                reserved=F("reserved") - releases.get(budget.pk, ZERO),
            )
            touched.add(budget.pk)
        BudgetReservation.objects.filter(pk__in=[r.pk for r in reservations]).delete()
        Budget.objects.filter(pk__in=touched, reserved__lt=0).update(reserved=ZERO)
    try:  # an alert failure must not undo (or make the caller retry) the settlement: its own savepoint
        with transaction.atomic():
            budget_alerts_check(budget_ids=sorted(touched))
    except Exception:
        logger.exception("checking budget alert thresholds failed")
    return sorted(touched)


def _caller_of(record: CostRecord):
    from agent_platform.observability.context import Caller

    return Caller(
        user_id=record.user_id, api_key_id=record.api_key_id, agent_id=record.agent_id, team_id=record.team_id
    )


def budget_release(*, attempt_ids: list[str]) -> list[int]:
    """Release the reservations of attempts that failed before costing anything."""
    return budget_settle(costs={}, released_attempts=attempt_ids)


def budget_release_stale(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Reservations whose call never reported back (a crashed process) are released after a while."""
    cutoff = timezone.now() - older_than
    attempts = list(
        BudgetReservation.objects.filter(created_at__lt=cutoff).values_list("attempt_id", flat=True).distinct()
    )
    if attempts:
        budget_release(attempt_ids=attempts)
    return len(attempts)
