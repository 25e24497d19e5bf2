"""Exactly one LLMCallRecord per attempt, on every path (mock provider; HTTP paths are in test_http_provider)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from agent_platform.api.errors import PlatformError
from agent_platform.llm.client import acomplete, astream
from agent_platform.llm.errors import LLMError
from agent_platform.observability.hooks import Observer, hub

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "hello"}]


async def _fallback_pair():
    from agent_platform.llm.services import endpoint_create

    await sync_to_async(endpoint_create)(name="secondary", model="mock/secondary", max_retries=0)
    await sync_to_async(endpoint_create)(name="primary", model="mock/primary", max_retries=1, fallbacks=["secondary"])


SCENARIOS = {
    # name: (failures queued on mock/primary, failures on mock/secondary, expected attempts, expected error code)
    "success": ([], [], 1, None),
    "one retry": (["server_error"], [], 2, None),
    "retries then fallback": (["server_error", "rate_limit"], [], 3, None),
    "everything fails": (["server_error", "timeout"], ["error"], 3, "LLM_API_ERROR"),
    "not retryable": (["bad_request"], [], 1, "LLM_API_ERROR"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_one_record_per_attempt(scenario, stream, mock_llm, llm_records):
    await _fallback_pair()
    primary_failures, secondary_failures, attempts, code = SCENARIOS[scenario]
    for kind in primary_failures:
        mock_llm("mock/primary").queue_failure(kind)
    for kind in secondary_failures:
        mock_llm("mock/secondary").queue_failure(kind)

    error = None
    try:
        if stream:
            chunks = [c async for c in astream(endpoint="primary", messages=USER)]
            response = chunks[-1].response
        else:
            response = await acomplete(endpoint="primary", messages=USER)
    except LLMError as exc:
        error, response = exc, None

    records = llm_records.records
    assert len(records) == attempts
    assert [r.attempt for r in records] == list(range(1, attempts + 1))
    assert len({r.attempt_id for r in records}) == attempts and len({r.call_id for r in records}) == 1
    assert [e.attempt_id for e in llm_records.estimates] == [r.attempt_id for r in records]
    assert all(r.stream is stream for r in records)
    if code is None:
        assert error is None and response.metadata["attempts"] == attempts
        assert records[-1].status == "ok" and all(r.status == "error" for r in records[:-1])
        assert response.span_id == records[-1].span_id
    else:
        assert error.code == code and error.details["attempts"] == attempts
        assert all(r.status == "error" for r in records)


async def test_a_cancelled_call_is_recorded_once(mock_llm, llm_records):
    mock_llm("mock/slow").queue_response(content="late", delay=5)
    task = asyncio.create_task(acomplete(endpoint="mock/slow", messages=USER))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = llm_records.records
    assert record.error_code == "RUN_CANCELLED"


async def test_a_cache_hit_is_one_unbilled_record(llm_records):
    await acomplete(endpoint="mock/cached", messages=USER, use_cache=True)
    hit = await acomplete(endpoint="mock/cached", messages=USER, use_cache=True)
    assert hit.metadata["cache_hit"] is True
    assert [(r.cache_hit, r.billable) for r in llm_records.records] == [(False, True), (True, False)]


class BrokenEstimate(Observer):
    name = "broken-estimate"

    def before_llm_call(self, estimate):
        raise ValueError("bug in an observer")


async def test_a_buggy_before_hook_is_logged_not_raised(llm_records, caplog):
    broken = BrokenEstimate()
    hub.register(broken)
    try:
        response = await acomplete(endpoint="mock/x", messages=USER)
    finally:
        hub.unregister(broken)
    assert response.content and len(llm_records.records) == 1
    assert any("broken-estimate" in r.getMessage() for r in caplog.records)


async def test_records_carry_caller_and_trace(llm_records):
    from agent_platform.observability.context import bind_caller
    from agent_platform.observability.spans import start_span

    with (
        bind_caller(user_id=7, agent_slug="a", prompt_name="p", prompt_version=3),
        start_span(kind="agent_run", name="run") as span,
    ):
        response = await acomplete(endpoint="mock/x", messages=USER)
    [record] = llm_records.records
    assert (record.caller.user_id, record.caller.agent_slug, record.caller.prompt_version) == (7, "a", 3)
    assert record.trace_id == span.trace_id == response.trace_id and record.parent_span_id == span.span_id


async def test_without_a_trace_each_call_opens_its_own(llm_records):
    first = await acomplete(endpoint="mock/x", messages=USER)
    second = await acomplete(endpoint="mock/x", messages=USER)
    assert first.trace_id != second.trace_id and len(first.trace_id) == 32 and len(first.span_id) == 16
    assert all(r.parent_span_id is None for r in llm_records.records)


async def test_a_budget_refusal_on_a_retry_stops_the_call(mock_llm, llm_records):
    class RefuseSecond(Observer):
        name = "refuse-second"
        seen = 0

        def before_llm_call(self, estimate):
            self.seen += 1
            if self.seen == 2:
                raise PlatformError("over budget", code="BUDGET_EXCEEDED")

    refuse = RefuseSecond()
    hub.register(refuse)
    mock_llm("mock/r").queue_failure("server_error")
    try:
        with pytest.raises(PlatformError) as caught:
            await acomplete(endpoint="mock/r", messages=USER)
    finally:
        hub.unregister(refuse)
    assert caught.value.code == "BUDGET_EXCEEDED"
    assert [r.error_code for r in llm_records.records] == ["LLM_API_ERROR", "BUDGET_EXCEEDED"]


async def test_custom_middleware_rewrites_requests_and_responses(mock_llm):
    from agent_platform.llm.middleware import LLMMiddleware, register_middleware, unregister_middleware

    class HouseRules(LLMMiddleware):
        async def pre_process(self, request):
            request.messages = [{"role": "system", "content": "Be brief."}, *request.messages]
            return request

        async def post_process(self, request, response):
            response.metadata["house_rules"] = True
            return response

    rules = HouseRules()
    register_middleware(rules)
    try:
        response = await acomplete(endpoint="mock/mw", messages=USER)
        chunks = [c async for c in astream(endpoint="mock/mw", messages=USER)]
    finally:
        unregister_middleware(rules)
    calls = mock_llm("mock/mw").calls
    assert [m["role"] for m in calls[0].messages] == ["system", "user"]
    assert [m["role"] for m in calls[1].messages] == ["system", "user"]
    assert response.metadata["house_rules"] and chunks[-1].response.metadata["house_rules"]
    plain = await acomplete(endpoint="mock/mw", messages=USER)
    assert "house_rules" not in plain.metadata


async def test_cancelled_while_the_budget_hook_waits_is_recorded_once(llm_records):
    class SlowBudget(Observer):
        name = "slow-budget"

        async def abefore_llm_call(self, estimate):
            await asyncio.sleep(5)

    slow = SlowBudget()
    hub.register(slow)
    try:
        task = asyncio.create_task(acomplete(endpoint="mock/x", messages=USER))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        hub.unregister(slow)
    [record] = llm_records.records
    assert record.error_code == "RUN_CANCELLED" and record.billable is False
