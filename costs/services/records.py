"""Cost records: built and priced per attempt, stored with their budget settlement in one transaction, recomputed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Model, Q
from django.utils import timezone

from agent_platform.observability.hooks import LLMCallEstimate, LLMCallRecord
from costs.models import CostRecord
from costs.pricing import CostParts, PriceRow, Tokens, cost_parts, price_cache
from costs.services.budgets import budget_settle
from costs.services.rollups import usage_rollup_build
from costs.validation import validate_recompute_range

ZERO = Decimal(0)


def _attribution(caller) -> dict[str, Any]:
    """Who a cost record is charged to: the caller's run, agent, user, API key, team and experiment."""
    return {
        "run_id": caller.run_id or "",
        "agent_id": caller.agent_id,
        "agent_slug": caller.agent_slug or "",
        "user_id": caller.user_id,
        "api_key_id": caller.api_key_id,
        "team_id": caller.team_id,
        "experiment_id": caller.experiment_id,
    }


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
        **_attribution(caller),
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
        **_attribution(caller),
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
        query.insert_values(fields, list[Model](records[i : i + batch]))
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
