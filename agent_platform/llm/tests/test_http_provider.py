"""The litellm provider against the fake OpenAI-compatible server, over real HTTP, through the whole call path."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async

from agent_platform.llm.client import acomplete, astream, complete
from agent_platform.llm.errors import InputTooLarge, LLMAPIError, LLMRateLimited, LLMTimeout
from tests.support.fixtures import FAKE_API_KEY, create_endpoint_for_fake_server

pytestmark = pytest.mark.django_db(transaction=True)

USER = [{"role": "user", "content": "Hello there"}]
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}


async def endpoint(server, name="fake", **fields):
    return await sync_to_async(create_endpoint_for_fake_server)(server, name, **fields)


async def test_plain_completion_reaches_the_server_and_is_recorded(fake_openai, llm_records):
    await endpoint(fake_openai)
    response = await acomplete(endpoint="fake", messages=USER)

    assert response.content == "Echo: Hello there"
    assert response.endpoint == "fake" and response.model == "openai/fake-model" and response.provider == "openai"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.metadata["response_id"].startswith("chatcmpl-")
    [request] = fake_openai.requests
    assert request.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
    assert request.body["model"] == "fake-model" and request.messages == USER
    [record] = llm_records.records
    assert record.status == "ok" and record.attempt == 1 and record.billable and not record.stream
    assert record.output == "Echo: Hello there" and record.input_tokens == response.usage.input_tokens
    assert record.call_id == response.call_id and record.span_id == response.span_id
    assert record.trace_id == response.trace_id


async def test_streamed_completion_yields_deltas_and_usage_from_the_final_chunk(fake_openai, llm_records):
    await endpoint(fake_openai)
    fake_openai.enqueue(content="one two three four", usage={"prompt_tokens": 11, "completion_tokens": 4})
    chunks = [chunk async for chunk in astream(endpoint="fake", messages=USER)]

    deltas = [c.delta for c in chunks if c.delta]
    assert len(deltas) >= 4 and "".join(deltas) == "one two three four"
    final = chunks[-1].response
    assert final is not None and all(c.response is None for c in chunks[:-1])
    assert final.content == "one two three four"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 4)
    assert final.time_to_first_token_ms is not None and final.time_to_first_token_ms <= final.latency_ms
    assert fake_openai.requests[0].body["stream_options"] == {"include_usage": True}
    [record] = llm_records.records
    assert record.stream and record.status == "ok" and record.output_tokens == 4
    assert record.time_to_first_token_ms == final.time_to_first_token_ms


async def test_tool_calls_plain_and_streamed(fake_openai):
    await endpoint(fake_openai)
    fake_openai.enqueue(tool_calls=[{"id": "call_1", "name": "calculator", "arguments": {"expression": "2+2"}}])
    response = await acomplete(endpoint="fake", messages=USER, tools=[CALC_TOOL])
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_1", "calculator", {"expression": "2+2"})
    assert fake_openai.requests[0].body["tools"] == [CALC_TOOL]

    fake_openai.enqueue(tool_calls=[{"id": "call_2", "name": "calculator", "arguments": {"expression": "3*3"}}])
    chunks = [chunk async for chunk in astream(endpoint="fake", messages=USER, tools=[CALC_TOOL])]
    tool_chunks = [c for c in chunks if c.tool_calls]
    assert len(tool_chunks) == 1
    [streamed] = tool_chunks[0].tool_calls
    assert streamed.id == "call_2" and json.loads(streamed.arguments) == {"expression": "3*3"}
    assert chunks[-1].response.tool_calls == tool_chunks[0].tool_calls


@pytest.mark.parametrize(
    ("fault", "code"), [("500", "LLM_API_ERROR"), ("malformed", "LLM_API_ERROR"), ("drop", "LLM_API_ERROR")]
)
async def test_retryable_faults_are_retried_then_succeed(fake_openai, llm_records, fault, code):
    await endpoint(fake_openai)
    fake_openai.enqueue(fault=fault)
    response = await acomplete(endpoint="fake", messages=USER)

    assert response.content == "Echo: Hello there"
    assert response.metadata["attempts"] == 2
    assert [(r.status, r.error_code, r.attempt) for r in llm_records.records] == [
        ("error", code, 1),
        ("ok", None, 2),
    ]
    assert len({r.span_id for r in llm_records.records}) == 2
    assert len({r.call_id for r in llm_records.records}) == 1


async def test_rate_limit_honours_retry_after(fake_openai, llm_records):
    await endpoint(fake_openai)
    fake_openai.enqueue(fault="429", retry_after=0.4)
    started = time.perf_counter()
    response = await acomplete(endpoint="fake", messages=USER)

    assert time.perf_counter() - started >= 0.4
    assert response.content == "Echo: Hello there"
    assert [r.error_code for r in llm_records.records] == ["LLM_RATE_LIMITED", None]


async def test_rate_limit_exhausted_raises_429_with_retry_after(fake_openai, llm_records):
    await endpoint(fake_openai, max_retries=1)
    fake_openai.enqueue(fault="429", retry_after=0)
    fake_openai.enqueue(fault="429", retry_after=2)
    with pytest.raises(LLMRateLimited) as caught:
        await acomplete(endpoint="fake", messages=USER)

    assert caught.value.code == "LLM_RATE_LIMITED" and caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "2"
    assert caught.value.details["attempts"] == 2
    assert len(llm_records.records) == 2


async def test_a_retry_after_longer_than_the_cap_goes_straight_to_the_fallback(fake_openai, llm_records, settings):
    settings.LLM_MAX_RETRY_AFTER = 1
    await endpoint(fake_openai, "backup")
    await endpoint(fake_openai, "fake", fallbacks=["backup"], credential_name="backup-key")
    fake_openai.enqueue(fault="429", retry_after=120)
    started = time.perf_counter()
    response = await acomplete(endpoint="fake", messages=USER)

    assert time.perf_counter() - started < 5
    assert response.endpoint == "backup"
    assert [(r.endpoint, r.error_code, r.is_fallback) for r in llm_records.records] == [
        ("fake", "LLM_RATE_LIMITED", False),
        ("backup", None, True),
    ]


async def test_exhausted_retries_fall_back_to_the_next_endpoint(fake_openai, llm_records):
    await endpoint(fake_openai, "backup")
    await endpoint(fake_openai, "fake", fallbacks=["backup"], max_retries=2, credential_name="backup-key")
    for _ in range(3):
        fake_openai.enqueue(fault="503")
    fake_openai.enqueue(content="from the backup")
    response = await acomplete(endpoint="fake", messages=USER)

    assert response.content == "from the backup" and response.endpoint == "backup"
    assert response.metadata["endpoints_tried"] == ["fake", "backup"]
    assert [(r.endpoint, r.status, r.attempt) for r in llm_records.records] == [
        ("fake", "error", 1),
        ("fake", "error", 2),
        ("fake", "error", 3),
        ("backup", "ok", 4),
    ]


async def test_every_endpoint_failing_raises_a_502_with_the_attempts(fake_openai, llm_records):
    await endpoint(fake_openai, max_retries=1)
    fake_openai.enqueue(fault="500")
    fake_openai.enqueue(fault="500")
    with pytest.raises(LLMAPIError) as caught:
        await acomplete(endpoint="fake", messages=USER)
    assert caught.value.code == "LLM_API_ERROR" and caught.value.status == 502
    assert caught.value.details["attempts"] == 2
    assert FAKE_API_KEY not in caught.value.message
    assert len(llm_records.records) == 2


async def test_a_bad_request_is_neither_retried_nor_sent_to_the_fallback(fake_openai, llm_records):
    await endpoint(fake_openai, "backup")
    await endpoint(fake_openai, "fake", fallbacks=["backup"], credential_name="backup-key")
    fake_openai.enqueue(fault="400")
    with pytest.raises(LLMAPIError) as caught:
        await acomplete(endpoint="fake", messages=USER)
    assert caught.value.details["status"] == 400
    assert len(fake_openai.requests) == 1 and len(llm_records.records) == 1


async def test_a_rejected_key_falls_back_without_retrying(fake_openai, llm_records):
    await endpoint(fake_openai, "backup")
    await endpoint(fake_openai, "fake", fallbacks=["backup"], credential_name="backup-key")
    fake_openai.enqueue(fault="401")
    response = await acomplete(endpoint="fake", messages=USER)
    assert response.endpoint == "backup"
    assert [r.error_code for r in llm_records.records] == ["LLM_API_ERROR", None]


async def test_a_hanging_server_times_out_within_bounds(fake_openai, llm_records):
    await endpoint(fake_openai, max_retries=1)
    fake_openai.enqueue(fault="hang")
    fake_openai.enqueue(fault="hang")
    started = time.perf_counter()
    with pytest.raises(LLMTimeout) as caught:
        await acomplete(endpoint="fake", messages=USER, timeout=0.3)
    elapsed = time.perf_counter() - started

    assert caught.value.code == "LLM_API_TIMEOUT" and caught.value.status == 504
    assert 0.6 <= elapsed < 3.0  # two attempts of 0.3 s plus a short backoff, never the server's hour
    assert [r.error_code for r in llm_records.records] == ["LLM_API_TIMEOUT", "LLM_API_TIMEOUT"]


async def test_a_stalled_stream_times_out(fake_openai, llm_records):
    await endpoint(fake_openai, max_retries=0)
    fake_openai.enqueue(fault="hang")
    started = time.perf_counter()
    with pytest.raises(LLMTimeout):
        [chunk async for chunk in astream(endpoint="fake", messages=USER, timeout=0.3)]
    assert time.perf_counter() - started < 3.0
    assert [r.error_code for r in llm_records.records] == ["LLM_API_TIMEOUT"]


async def test_a_stream_failing_before_any_text_is_retried(fake_openai, llm_records):
    await endpoint(fake_openai)
    fake_openai.enqueue(fault="500")
    chunks = [chunk async for chunk in astream(endpoint="fake", messages=USER)]
    assert chunks[-1].response.content == "Echo: Hello there"
    assert [r.status for r in llm_records.records] == ["error", "ok"]


@pytest.mark.parametrize("fault", ["drop", "malformed"])
async def test_a_stream_broken_midway_raises_without_repeating_text(fake_openai, llm_records, fault):
    await endpoint(fake_openai)
    fake_openai.enqueue(content="alpha beta gamma delta epsilon", fault=fault)
    received = []
    with pytest.raises(LLMAPIError) as caught:
        async for chunk in astream(endpoint="fake", messages=USER):
            received.append(chunk.delta)
    assert caught.value.code == "LLM_API_ERROR"
    assert "".join(received).startswith("alpha ")
    assert len(fake_openai.requests) == 1
    [record] = llm_records.records
    assert record.status == "error" and record.output.startswith("alpha ")


async def test_closing_a_stream_early_records_the_attempt_once(fake_openai, llm_records):
    await endpoint(fake_openai)
    fake_openai.enqueue(content="a b c d e f g h")
    stream = astream(endpoint="fake", messages=USER)
    async for chunk in stream:
        if chunk.delta:
            break
    await stream.aclose()
    [record] = llm_records.records
    assert record.error_code == "RUN_CANCELLED"


async def test_connection_refused_is_not_billable(llm_records):
    from agent_platform.llm.services import credential_create, endpoint_create

    def make():
        credential = credential_create(name="dead-key", provider="openai", api_key="sk-dead-0000000000000000")
        endpoint_create(
            name="dead", model="openai/x", api_base="http://127.0.0.1:9/v1", credential=credential, max_retries=0
        )

    await sync_to_async(make)()
    with pytest.raises(LLMAPIError):
        await acomplete(endpoint="dead", messages=USER, timeout=2)
    [record] = llm_records.records
    assert record.status == "error" and record.billable is False


async def test_input_over_the_limit_is_refused_before_any_request(fake_openai, llm_records, settings):
    settings.LLM_MAX_INPUT_CHARS = 100
    await endpoint(fake_openai)
    with pytest.raises(InputTooLarge) as caught:
        await acomplete(endpoint="fake", messages=[{"role": "user", "content": "x" * 101}])
    assert caught.value.code == "LLM_INPUT_TOO_LARGE" and caught.value.status == 413
    assert caught.value.details["field"] == "messages"
    assert fake_openai.requests == [] and llm_records.records == []


async def test_input_over_the_context_window_is_refused(fake_openai):
    await endpoint(fake_openai, context_window=50)
    with pytest.raises(InputTooLarge) as caught:
        await acomplete(endpoint="fake", messages=[{"role": "user", "content": "word " * 100}])
    assert caught.value.details["context_window"] == 50
    assert fake_openai.requests == []


async def test_concurrent_calls_each_get_their_own_record(fake_openai, llm_records):
    await endpoint(fake_openai)
    responses = await asyncio.gather(
        *(acomplete(endpoint="fake", messages=[{"role": "user", "content": f"n{i}"}]) for i in range(16))
    )
    assert sorted(r.content for r in responses) == sorted(f"Echo: n{i}" for i in range(16))
    assert len(llm_records.records) == 16 and len({r.call_id for r in llm_records.records}) == 16


@pytest.mark.django_db(transaction=False)
def test_sync_complete_works_from_plain_django_code(fake_openai, llm_records):
    from agent_platform.observability.context import bind_caller
    from agent_platform.observability.spans import start_span

    create_endpoint_for_fake_server(fake_openai)
    with bind_caller(agent_slug="helper", run_id="run-1"), start_span(kind="agent_run", name="run") as span:
        response = complete(endpoint="fake", messages=USER)
    assert response.content == "Echo: Hello there"
    [record] = llm_records.records
    assert record.caller.agent_slug == "helper" and record.caller.run_id == "run-1"
    assert record.trace_id == span.trace_id and record.parent_span_id == span.span_id
