"""Writes of the costs app: prices, cost records, rollups, budget reservations and settlements, alerts."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connections, router, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from agent_platform.api.errors import PlatformError, ValidationFailed
from agent_platform.observability.hooks import LLMCallEstimate, LLMCallRecord
from costs.budgets import budget_index, bump_budget_version
from costs.models import Budget, BudgetAlert, BudgetReservation, CostRecord, Price, UsageDaily, UsageRollupDay
from costs.pricing import CostParts, PriceRow, Tokens, bump_price_version, compute_cost, cost_parts, price_cache
from costs.validation import validate_recompute_range

logger = logging.getLogger("costs")
ZERO = Decimal(0)


# --- prices ----------------------------------------------------------------------------------------------------


@transaction.atomic
def price_save(*, price: Price) -> Price:
    _full_clean(price)
    price.save()
    price_cache.invalidate()
    transaction.on_commit(bump_price_version)
    return price


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0  # re-priced: a new row effective from now beside the old one
    unchanged: int = 0
    skipped_manual: int = 0
    skipped_invalid: int = 0


def _per_million(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return (Decimal(str(value)) * 1_000_000).quantize(Decimal("0.0000000001"))
    except (InvalidOperation, ValueError):
        return None


LITELLM_MAP_FILE = "model_prices_and_context_window_backup.json"
FIRST_IMPORT_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # a model's first price also prices calls recorded before it


def litellm_bundled_cost_map() -> dict[str, dict]:
    """The cost map packaged with the installed litellm, read from its file (never fetched from the internet, and
    without importing litellm, which takes seconds: this runs on every `migrate`)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("litellm is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / LITELLM_MAP_FILE
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


@transaction.atomic
def prices_import_litellm(*, cost_map: dict[str, dict] | None = None) -> ImportResult:
    """Sync `source=litellm` prices with litellm's bundled cost map. A model's first price is effective from
    2000-01-01; a changed price adds a new row effective from now (the old row keeps pricing earlier calls); an
    unchanged price writes nothing. A model that has a manual price (same provider and model) is left alone:
    prices edited by hand always win."""
    if cost_map is None:
        cost_map = litellm_bundled_cost_map()
    result = ImportResult()
    now = timezone.now()
    manual = set(Price.objects.filter(source=Price.Source.MANUAL).values_list("provider", "model"))
    current: dict[tuple[str, str], Price] = {}  # the latest litellm row of each (provider, model)
    for price in Price.objects.filter(source=Price.Source.LITELLM).order_by("effective_from", "id"):
        current[(price.provider, price.model)] = price
    new_rows: list[Price] = []
    for model, info in cost_map.items():
        if model == "sample_spec" or not isinstance(info, dict):
            continue
        provider = str(info.get("litellm_provider") or "")[:64]
        input_price = _per_million(info.get("input_cost_per_token"))
        output_price = _per_million(info.get("output_cost_per_token"))
        if input_price is None and output_price is None:
            result.skipped_invalid += 1
            continue
        if (provider, model) in manual or ("", model) in manual or len(model) > 200:
            result.skipped_manual += 1
            continue
        values = {
            "input_per_million": input_price or ZERO,
            "output_per_million": output_price or ZERO,
            "cached_input_per_million": _per_million(info.get("cache_read_input_token_cost")),
            "cache_write_per_million": _per_million(info.get("cache_creation_input_token_cost")),
            "reasoning_per_million": _per_million(info.get("output_cost_per_reasoning_token")),
            "per_request": Decimal(str(info.get("input_cost_per_request") or 0)).quantize(Decimal("0.0000000001")),
        }
        row = current.get((provider, model))
        if row is not None and all(getattr(row, k) == v for k, v in values.items()):
            result.unchanged += 1
            continue
        new_rows.append(
            Price(
                provider=provider,
                model=model,
                source=Price.Source.LITELLM,
                effective_from=FIRST_IMPORT_FROM if row is None else now,
                notes="imported from litellm",
                **values,
            )
        )
        if row is None:
            result.created += 1
        else:
            result.updated += 1
    # one INSERT per 500 rows: a fresh database takes the whole map (thousands of rows) on its first `migrate`
    bulk_create_with_history(new_rows, Price, batch_size=500)
    if new_rows:
        transaction.on_commit(bump_price_version)
    return result


def prices_import_on_migrate(*, using: str) -> ImportResult | None:
    """After `migrate`: bring the litellm prices up to date, so real models are priced on a fresh database with no
    command run (and after an upgrade of litellm). Nothing when the price table is not at its latest migration
    (a partial or backwards `migrate`) or lives in another database."""
    if using != router.db_for_write(Price):
        return None
    connection = connections[using]
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    applied = MigrationRecorder(connection).applied_migrations()
    if any(leaf not in applied for leaf in loader.graph.leaf_nodes(Price._meta.app_label)):
        return None
    try:
        cost_map = litellm_bundled_cost_map()
    except (OSError, RuntimeError, ValueError):  # a litellm without its map must not fail the deploy's migrate
        logger.warning("litellm's bundled cost map could not be read: prices were not synced", exc_info=True)
        return None
    return prices_import_litellm(cost_map=cost_map)


# --- cost records ------------------------------------------------------------------------------------------------


def cost_record_build(
    record: LLMCallRecord,
    *,
    refresh_prices: bool = True,
    priced: tuple[PriceRow | None, CostParts] | None = None,
) -> CostRecord:
    """An unsaved cost record for an attempt. `priced` is the (price row or None for "no price matches", cost
    parts) the call was priced at on the hot path; without it, the record is priced from the in-process price
    cache."""
    caller = record.caller
    cost_record = CostRecord(
        attempt_id=record.attempt_id,
        call_id=record.call_id or "",
        created_at=record.started_at,
        trace_id=record.trace_id or "",
        span_id=record.span_id or "",
        run_id=caller.run_id or "",
        agent_id=caller.agent_id,
        agent_slug=caller.agent_slug or "",
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
        team_id=caller.team_id,
        experiment_id=caller.experiment_id,
        provider=record.provider or "",
        model=record.model or "",
        endpoint=record.endpoint or "",
        status=record.status,
        error_code=(record.error_code or "")[:64] if record.status != "ok" else "",
        input_tokens=max(record.input_tokens, 0),
        output_tokens=max(record.output_tokens, 0),
        cached_tokens=max(record.cached_tokens, 0),
        cache_write_tokens=max(record.cache_write_tokens, 0),
        reasoning_tokens=max(record.reasoning_tokens, 0),
        latency_ms=record.latency_ms,
    )
    if priced is None:
        _price_record(cost_record, refresh=refresh_prices)
    else:
        _apply_price(cost_record, *priced)
    return cost_record


def price_llm_call(record: LLMCallRecord) -> tuple[PriceRow | None, CostParts] | None:
    """Hot path: (matching price row or None, cost parts) of a billed attempt from the price cache as it is (a dict
    lookup, no query); None when the cache is not loaded (the record is priced when it is written)."""
    if not price_cache.loaded:
        return None
    price = price_cache.lookup(provider=record.provider or "", model=record.model or "", at=record.started_at)
    if price is None:
        return None, CostParts()
    tokens = Tokens(
        input=record.input_tokens,
        output=record.output_tokens,
        cached=record.cached_tokens,
        reasoning=record.reasoning_tokens,
        cache_write=record.cache_write_tokens,
    )
    return price, cost_parts(price, tokens, failed=record.status != "ok")


PRICED_FIELDS = [
    "price",
    "cost",
    "input_cost",
    "output_cost",
    "cached_read_cost",
    "cache_write_cost",
    "reasoning_cost",
    "request_cost",
    "currency",
    "unpriced",
]


def _apply_price(cost_record: CostRecord, price: PriceRow | None, parts: CostParts) -> None:
    if price is None:
        parts = CostParts()
    cost_record.cost = parts.total
    cost_record.input_cost, cost_record.output_cost = parts.input, parts.output
    cost_record.cached_read_cost, cost_record.cache_write_cost = parts.cached_read, parts.cache_write
    cost_record.reasoning_cost, cost_record.request_cost = parts.reasoning, parts.request
    if price is None:
        cost_record.price_id, cost_record.unpriced = None, True
        return
    cost_record.price_id = price.id
    cost_record.currency = price.currency
    cost_record.unpriced = False


def _price_record(cost_record: CostRecord, *, refresh: bool = True) -> bool:
    """Set price, cost (and its parts), currency and unpriced from the cache; False when the cache is not loaded
    (cannot tell)."""
    if not price_cache.loaded and not refresh:
        return False
    price = price_cache.price_for(
        provider=cost_record.provider, model=cost_record.model, at=cost_record.created_at, refresh=refresh
    )
    if price is None:
        if not price_cache.loaded:
            return False
        _apply_price(cost_record, None, CostParts())
        return True
    tokens = Tokens(
        input=cost_record.input_tokens,
        output=cost_record.output_tokens,
        cached=cost_record.cached_tokens,
        reasoning=cost_record.reasoning_tokens,
        cache_write=cost_record.cache_write_tokens,
    )
    _apply_price(cost_record, price, cost_parts(price, tokens, failed=cost_record.status != "ok"))
    return True


def cost_records_write(
    *, records: list[CostRecord], released_attempts: list[str] | None = None, costs_given: frozenset[str] = frozenset()
) -> int:
    """Store buffered cost records (idempotent by attempt id), settle hard-budget reservations to the actual
    costs, add the costs to every matching budget and fire threshold alerts. Returns the records inserted.
    `costs_given`: attempt ids whose cost came with the record (an ingested span that says what it cost): not priced.

    The insert and the settlement are one transaction, and only the rows this insert actually added are charged:
    a concurrent flush of the same attempt waits on the unique attempt id and then inserts (and charges) nothing,
    and a failed settlement rolls the insert back, so the buffer's retry stores and charges the records once."""
    seen = set()
    fresh = []
    for record in records:  # a record already stored (a retried flush, a repeated ingest) is neither stored nor charged
        if record.attempt_id not in seen:
            seen.add(record.attempt_id)
            fresh.append(record)
    done = CostRecord.objects.filter(attempt_id__in=seen).exclude(status=CostRecord.STARTED) if seen else None
    stored = set(done.values_list("attempt_id", flat=True)) if done is not None else set()
    fresh = [r for r in fresh if r.attempt_id not in stored]
    for record in fresh:
        if record.price_id is None and not record.unpriced and record.attempt_id not in costs_given:
            _price_record(record, refresh=True)
    fresh.sort(key=lambda r: r.attempt_id)  # one lock order on the unique index: concurrent flushes cannot deadlock
    with transaction.atomic():
        inserted = _insert_new(fresh)
        inserted |= _complete_started([r for r in fresh if r.attempt_id not in inserted])
        if released_attempts:  # never reached the vendor: a record of its start would claim it did
            CostRecord.objects.filter(attempt_id__in=released_attempts, status=CostRecord.STARTED).delete()
        budget_settle(
            costs={r.attempt_id: (r.cost, r) for r in fresh if r.attempt_id in inserted},
            released_attempts=released_attempts or [],
        )
    return len(inserted)


def cost_record_start(*, estimate: LLMCallEstimate) -> bool:
    """Store an attempt as "started" before its request is sent (in a worker: see `CostRecord`); the record of its
    end completes it. False when the attempt is already stored."""
    caller = estimate.caller
    record = CostRecord(
        attempt_id=estimate.attempt_id,
        call_id=estimate.call_id,
        created_at=estimate.started_at or timezone.now(),
        trace_id=estimate.trace_id,
        span_id=estimate.span_id,
        run_id=caller.run_id or "",
        agent_id=caller.agent_id,
        agent_slug=caller.agent_slug or "",
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
        team_id=caller.team_id,
        experiment_id=caller.experiment_id,
        provider=estimate.provider or "",
        model=estimate.model or "",
        endpoint=estimate.endpoint or "",
        status=CostRecord.STARTED,
    )
    with transaction.atomic():
        return bool(_insert_new([record]))


def _complete_started(records: list[CostRecord]) -> set[str]:
    """Fill in the records stored as "started" with how their attempts ended; their attempt ids (to be charged).
    The rows are locked first, so of two concurrent flushes of one attempt only the first completes (and charges)
    it: the second finds it no longer started."""
    if not records:
        return set()
    by_attempt = {r.attempt_id: r for r in records}
    started = (
        CostRecord.objects.select_for_update()
        .filter(attempt_id__in=list(by_attempt), status=CostRecord.STARTED)
        .order_by("attempt_id")
        .values_list("attempt_id", "pk")
    )
    completed = []
    for attempt_id, pk in started:
        record = by_attempt[attempt_id]
        record.pk = pk
        completed.append(record)
    if completed:
        fields = [f.name for f in CostRecord._meta.concrete_fields if not f.primary_key and f.name != "attempt_id"]
        CostRecord.objects.bulk_update(completed, fields, batch_size=200)
    return {r.attempt_id for r in completed}


def _insert_new(records: list[CostRecord]) -> set[str]:
    """Insert the records, skipping attempt ids already stored (`ON CONFLICT DO NOTHING` / `INSERT OR IGNORE`),
    and return the attempt ids of the rows this statement added (`RETURNING` yields only those)."""
    from django.db import connections, router
    from django.db.models.constants import OnConflict
    from django.db.models.sql import InsertQuery

    if not records:
        return set()
    opts = CostRecord._meta
    using = router.db_for_write(CostRecord)
    fields = [f for f in opts.concrete_fields if not f.primary_key and not f.generated]
    ops = connections[using].ops
    batch = max(1, min(500, ops.bulk_batch_size(fields, records)))
    attempt_field = opts.get_field("attempt_id")
    inserted: set[str] = set()
    for i in range(0, len(records), batch):
        query = InsertQuery(CostRecord, on_conflict=OnConflict.IGNORE)
        query.insert_values(fields, records[i : i + batch])
        rows = query.get_compiler(using=using).execute_sql(returning_fields=[attempt_field])
        inserted.update(row[0] for row in rows if row is not None)  # one row skipped: Django gives None
    return inserted


def cost_records_from_spans(*, spans: list[dict[str, Any]], user_id: int | None) -> int:
    """Cost records for LLM spans ingested from outside applications (attempt id `span:<span_id>`), priced from
    the table unless the span carries its own cost; idempotent, and charged to the caller's budgets once."""
    records, given = [], set()
    for span in spans:
        if not span.get("model") or span.get("kind") != "llm":
            continue
        record = CostRecord(
            attempt_id=f"span:{span['span_id']}",
            created_at=span["start_time"],
            trace_id=span["trace_id"],
            span_id=span["span_id"],
            user_id=user_id,
            provider=span.get("provider") or "",
            model=span["model"],
            endpoint=span.get("endpoint") or "",
            status=span.get("status") or "ok",
            input_tokens=span.get("input_tokens") or 0,
            output_tokens=span.get("output_tokens") or 0,
            cached_tokens=span.get("cached_tokens") or 0,
            reasoning_tokens=span.get("reasoning_tokens") or 0,
        )
        if span.get("cost") is not None:
            record.cost = span["cost"]
            given.add(record.attempt_id)
        records.append(record)
    return cost_records_write(records=records, costs_given=frozenset(given)) if records else 0


@transaction.atomic
def cost_records_recompute(
    *,
    start: datetime,
    end: datetime,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
) -> dict[str, int]:
    """Reprice every cost record created in [start, end) with the price table as it is now (after a correction),
    then rebuild the affected days' rollups. Budgets are not re-charged. `provider` and `model` match exactly;
    `agent` is an agent's id or slug. The admin, the API and `manage.py recompute_costs` all call this."""
    validate_recompute_range(start=start, end=end)
    price_cache.invalidate()
    changed = 0
    seen = 0
    days: set[date] = set()
    batch: list[CostRecord] = []
    records = CostRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if provider:
        records = records.filter(provider=provider)
    if model:
        records = records.filter(model=model)
    if agent:
        by_agent = Q(agent_slug=agent)
        if agent.isdigit():
            by_agent |= Q(agent_id=int(agent))
        records = records.filter(by_agent)
    # ingested spans that carried their own cost keep it
    records = records.exclude(attempt_id__startswith="span:", price__isnull=True, unpriced=False)
    for record in records.iterator(chunk_size=2000):
        seen += 1
        before = (record.price_id, record.cost, record.unpriced)
        _price_record(record, refresh=True)
        if (record.price_id, record.cost, record.unpriced) != before:
            changed += 1
            batch.append(record)
            days.add(record.created_at.astimezone(UTC).date())
        if len(batch) >= 1000:
            CostRecord.objects.bulk_update(batch, PRICED_FIELDS)
            batch = []
    if batch:
        CostRecord.objects.bulk_update(batch, PRICED_FIELDS)
    today = timezone.now().astimezone(UTC).date()
    for day in sorted(days):
        if day < today:
            usage_rollup_build(day=day)
    return {"records": seen, "changed": changed, "days": len(days)}


# --- rollups --------------------------------------------------------------------------------------------------------

ROLLUP_KEYS = ("provider", "model", "agent_id", "user_id", "api_key_id", "team_id")


@transaction.atomic
def usage_rollup_build(*, day: date) -> int:
    """Rebuild the rollup rows of one UTC day from its cost records and mark the day complete."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    UsageDaily.objects.filter(day=day).delete()
    rows = (
        CostRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .values(*ROLLUP_KEYS)
        .annotate(
            n=Count("id"),
            n_errors=Count("id", filter=~Q(status="ok")),
            n_unpriced=Count("id", filter=Q(unpriced=True)),
            in_t=Coalesce(Sum("input_tokens"), 0),
            out_t=Coalesce(Sum("output_tokens"), 0),
            cached_t=Coalesce(Sum("cached_tokens"), 0),
            reasoning_t=Coalesce(Sum("reasoning_tokens"), 0),
            total_cost=Coalesce(Sum("cost"), ZERO),
        )
        .order_by()
    )
    objs = [
        UsageDaily(
            day=day,
            calls=r["n"],
            errors=r["n_errors"],
            unpriced_calls=r["n_unpriced"],
            input_tokens=r["in_t"],
            output_tokens=r["out_t"],
            cached_tokens=r["cached_t"],
            reasoning_tokens=r["reasoning_t"],
            cost=r["total_cost"],
            **{k: r[k] for k in ROLLUP_KEYS},
        )
        for r in rows
    ]
    UsageDaily.objects.bulk_create(objs, batch_size=2000)
    UsageRollupDay.objects.update_or_create(
        day=day, defaults={"built_at": timezone.now(), "records": sum(o.calls for o in objs)}
    )
    return len(objs)


def usage_rollups_refresh(*, days_back: int = 3) -> list[date]:
    """Rebuild the last `days_back` whole days (late records arrive after midnight) and any older day that has
    cost records but no rollup yet."""
    today = timezone.now().astimezone(UTC).date()
    wanted = {today - timedelta(days=i) for i in range(1, days_back + 1)}
    first = CostRecord.objects.order_by("created_at").values_list("created_at", flat=True).first()
    if first is not None:
        built = set(UsageRollupDay.objects.values_list("day", flat=True))
        day = first.astimezone(UTC).date()
        while day < today:
            if day not in built:
                wanted.add(day)
            day += timedelta(days=1)
    done = []
    for day in sorted(wanted):
        usage_rollup_build(day=day)
        done.append(day)
    return done


# --- budgets -------------------------------------------------------------------------------------------------------


def _full_clean(obj) -> None:
    try:
        obj.full_clean()
    except DjangoValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"item": exc.messages}
        name = next(iter(fields))
        raise ValidationFailed(f"{name}: {' '.join(fields[name])}", field=name, details={"fields": fields}) from exc


@transaction.atomic
def budget_save(*, budget: Budget) -> Budget:
    _full_clean(budget)
    budget.save()
    budget_index.invalidate()
    transaction.on_commit(bump_budget_version)
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    budget.delete()
    transaction.on_commit(bump_budget_version)


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
    price = price_cache.price_for(provider=estimate.provider, model=estimate.model, at=timezone.now())
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
            transaction.on_commit(lambda alert_id=alert.pk: send_budget_alert.delay(alert_id))
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
