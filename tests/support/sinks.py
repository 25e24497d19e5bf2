"""Fixtures and record builders shared by the tests of the two sinks, traces and costs."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from agent_platform.observability.context import Caller, current_caller, current_trace
from agent_platform.observability.hooks import LLMCallRecord

_mock_price_id: list[int] = []  # the id the data migration gave the mock's demo price


def mock_price_restore() -> None:
    """The demo price of the mock provider as the data migration made it, with the same id: transactional tests
    flush it, and a worker process's price cache (cost records point at the row) must still name a row that exists."""
    from costs.models import Price

    since = datetime(2000, 1, 1, tzinfo=UTC)
    key = {"provider": "mock", "model": "mock/*", "source": "manual", "effective_from": since}
    price = Price.objects.filter(**key).first()
    if price is None:
        values = {"input_per_million": "0.50", "output_per_million": "1.50", "cached_input_per_million": "0.25"}
        price = Price.objects.create(**key, **values, **({"id": _mock_price_id[0]} if _mock_price_id else {}))
    if not _mock_price_id:
        _mock_price_id.append(price.id)


@pytest.fixture(autouse=True)
def _mock_price(request):
    """The demo price of the mock provider (a data migration creates it; transactional tests flush it)."""
    if "django_db" not in {m.name for m in request.node.iter_markers()}:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    mock_price_restore()
    yield


@pytest.fixture(autouse=True)
def _fresh_sinks():
    """Each test starts with empty buffers and cold price/budget caches."""
    from costs.budgets import budget_index
    from costs.observer import observer as cost_observer
    from costs.pricing import price_cache
    from traces.observer import observer as trace_observer

    for o in (trace_observer, cost_observer):
        o.buffer.take()
    price_cache.invalidate()
    budget_index.invalidate()
    yield
    for o in (trace_observer, cost_observer):
        o.buffer.take()


def llm_record(
    *,
    model: str = "mock/demo",
    provider: str = "mock",
    input_tokens: int = 100,
    output_tokens: int = 50,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    status: str = "ok",
    started_at: datetime | None = None,
    latency_ms: float = 12.0,
    caller: Caller | None = None,
    billable: bool = True,
    trace_id: str | None = None,
    parent_span_id: str | None = None,
) -> LLMCallRecord:
    ctx = current_trace()
    started = started_at or datetime.now(UTC)
    return LLMCallRecord(
        attempt_id=secrets.token_hex(8),
        call_id=secrets.token_hex(8),
        trace_id=trace_id or (ctx.trace_id if ctx else secrets.token_hex(16)),
        span_id=secrets.token_hex(8),
        parent_span_id=parent_span_id or (ctx.span_id if ctx else None),
        endpoint=model,
        model=model,
        provider=provider,
        started_at=started,
        ended_at=started + timedelta(milliseconds=latency_ms),
        messages=[{"role": "user", "content": "What is 2+2?"}],
        output="4" if status == "ok" else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        latency_ms=latency_ms,
        time_to_first_token_ms=5.0,
        status=status,
        error_code=None if status == "ok" else "LLM_API_ERROR",
        error_message=None if status == "ok" else "boom",
        billable=billable,
        caller=caller or current_caller(),
    )
