"""The real LLM layer (mock provider) → hub → traces and costs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import SpanKind, hub
from agent_platform.observability.spans import start_span
from costs.models import Budget, CostRecord
from costs.services import budget_save
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_mock_call_is_priced_traced_and_recorded(user):
    from agent_platform.llm.client import complete

    with bind_caller(user_id=user.pk, agent_id=11), start_span(kind=SpanKind.AGENT_RUN, name="demo run") as run:
        response = complete(endpoint="mock/demo", messages=[{"role": "user", "content": "Hello there"}])
    hub.flush()
    assert isinstance(response.cost, Decimal) and response.cost > 0
    record = CostRecord.objects.get()
    assert record.cost == response.cost and record.trace_id == run.trace_id and record.user_id == user.pk
    llm_span = Span.objects.get(kind=SpanKind.LLM)
    assert llm_span.parent_span_id == run.span_id and llm_span.cost == response.cost
    assert llm_span.span_id == response.span_id == record.span_id
    trace = Trace.objects.get(trace_id=run.trace_id)
    assert trace.cost == response.cost and trace.llm_call_count == 1


def test_a_hard_budget_refuses_a_real_call(user):
    from agent_platform.llm.client import complete

    budget_save(budget=Budget(name="zero", scope="user", scope_id=user.pk, limit=Decimal("0"), enforcement="hard"))
    with bind_caller(user_id=user.pk), pytest.raises(PlatformError) as exc:
        complete(endpoint="mock/demo", messages=[{"role": "user", "content": "Hello"}])
    assert exc.value.code == "BUDGET_EXCEEDED" and "zero" in exc.value.message
    hub.flush()
    assert not CostRecord.objects.exists()
