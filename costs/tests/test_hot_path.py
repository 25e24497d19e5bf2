"""The observers' hot path: calls are priced from the in-process price memo (the right row at the call's time),
the cost handed back with the response is the one stored, and stale caches are refreshed without holding up the
event loop (a budget created by another process applies to the next call)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import Caller
from agent_platform.observability.hooks import LLMCallEstimate, hub
from costs.models import Budget, CostRecord, Price
from tests.support.sinks import llm_record


def _price(model: str, input_per_million: str, effective_from: datetime, provider: str = "acme") -> Price:
    return Price.objects.create(
        provider=provider,
        model=model,
        source="manual",
        input_per_million=Decimal(input_per_million),
        output_per_million=Decimal(0),
        effective_from=effective_from,
    )


@pytest.mark.django_db
def test_the_price_memo_picks_the_row_in_force_at_the_call_time_and_exact_beats_pattern():
    from costs.pricing import match_price, price_cache

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    pattern = _price("acme/*", "1", t0)
    old = _price("acme/big", "2", t0 + timedelta(days=10))
    new = _price("acme/big", "3", t0 + timedelta(days=20))
    rows = price_cache.rows()
    cases = [
        (t0 - timedelta(days=1), None),
        (t0 + timedelta(days=1), pattern.pk),
        (t0 + timedelta(days=10), old.pk),
        (t0 + timedelta(days=15), old.pk),
        (t0 + timedelta(days=25), new.pk),
    ]
    for at, expected in cases:
        for _ in range(2):  # the first lookup builds the memo entry, the second reads it
            found = price_cache.lookup(provider="acme", model="acme/big", at=at)
            assert (found.id if found else None) == expected, at
        direct = match_price(rows, provider="acme", model="acme/big", at=at)
        assert (direct.id if direct else None) == expected
    assert price_cache.lookup(provider="other", model="acme/big", at=t0 + timedelta(days=25)) is None


@pytest.mark.django_db(transaction=True)
async def test_in_an_event_loop_the_returned_cost_is_the_stored_one_and_the_trace_span_agrees():
    from costs.observer import observer as cost_observer
    from costs.pricing import price_cache
    from traces.models import Span
    from traces.observer import observer as trace_observer

    await sync_to_async(price_cache.rows)()  # warm, as abefore_llm_call leaves it
    record = llm_record(input_tokens=1_000_000, output_tokens=1_000_000)
    annotations = hub.emit_llm_call(record)
    assert annotations["cost"] == Decimal("2.0")  # mock demo price: 0.50 in + 1.50 out per million
    hub.flush()
    await sync_to_async(cost_observer.buffer.wait)()
    await sync_to_async(trace_observer.buffer.wait)()
    stored = await CostRecord.objects.aget(attempt_id=record.attempt_id)
    assert stored.cost == annotations["cost"] and stored.price_id is not None and not stored.unpriced
    span = await Span.objects.aget(span_id=record.span_id)
    assert span.cost == annotations["cost"] and span.input_tokens == 1_000_000


@pytest.mark.django_db(transaction=True)
async def test_in_an_event_loop_a_hard_budget_set_by_another_process_applies_to_the_next_call(user):
    from costs.budgets import VERSION_KEY, budget_index
    from costs.observer import observer

    caller = Caller(user_id=user.pk)

    def estimate() -> LLMCallEstimate:
        return LLMCallEstimate(
            attempt_id=secrets.token_hex(8),
            endpoint="mock/demo",
            model="mock/demo",
            provider="mock",
            estimated_input_tokens=1000,
            max_output_tokens=1000,
            caller=caller,
        )

    await observer.abefore_llm_call(estimate())  # cold: loads the index (no budget: nothing reserved)
    assert budget_index.loaded
    # another process creates a hard budget with no room left and bumps the shared version stamp
    await Budget.objects.acreate(
        name="spent", scope="user", scope_id=user.pk, period="total", limit=Decimal("0"), enforcement="hard"
    )
    await sync_to_async(cache.set)(VERSION_KEY, time.time_ns(), None)
    with pytest.raises(PlatformError) as refused:
        await observer.abefore_llm_call(estimate())
    assert refused.value.code == "BUDGET_EXCEEDED"


@pytest.mark.django_db(transaction=True)
async def test_concurrent_calls_in_an_event_loop_all_see_a_budget_set_by_another_process(user):
    import asyncio

    from costs.budgets import VERSION_KEY
    from costs.observer import observer

    caller = Caller(user_id=user.pk)

    def estimate() -> LLMCallEstimate:
        return LLMCallEstimate(
            attempt_id=secrets.token_hex(8),
            endpoint="mock/demo",
            model="mock/demo",
            provider="mock",
            estimated_input_tokens=1000,
            max_output_tokens=1000,
            caller=caller,
        )

    await asyncio.gather(*(observer.abefore_llm_call(estimate()) for _ in range(16)))  # no budget: all allowed
    await Budget.objects.acreate(
        name="spent", scope="user", scope_id=user.pk, period="total", limit=Decimal("0"), enforcement="hard"
    )
    await sync_to_async(cache.set)(VERSION_KEY, time.time_ns(), None)
    outcomes = await asyncio.gather(*(observer.abefore_llm_call(estimate()) for _ in range(16)), return_exceptions=True)
    assert all(isinstance(o, PlatformError) and o.code == "BUDGET_EXCEEDED" for o in outcomes), outcomes
