"""The mock provider: scripted replies, tool calls, failures through the real retry path, smart defaults."""

from __future__ import annotations

import json

import pytest

from agent_platform.llm.client import acomplete, astream, complete, count_tokens
from agent_platform.llm.errors import LLMAPIError, LLMTimeout

CALC = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
pytestmark = pytest.mark.django_db(transaction=True)


async def test_queued_responses_and_call_history(mock_llm, llm_records):
    m = mock_llm("mock/scripted")
    m.queue_response(content="first")
    m.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "2+2"}}])
    one = await acomplete(endpoint="mock/scripted", messages=[{"role": "user", "content": "a"}])
    two = await acomplete(endpoint="mock/scripted", messages=[{"role": "user", "content": "b"}], tools=[CALC])

    assert one.content == "first" and one.provider == "mock"
    assert two.tool_calls[0].name == "calculator" and json.loads(two.tool_calls[0].arguments) == {"expression": "2+2"}
    assert [c.last_user_message for c in m.calls] == ["a", "b"] and m.calls[1].tools == [CALC]
    assert all(r.provider == "mock" and r.billable for r in llm_records.records)


async def test_queued_failures_go_through_retry_and_surface_typed_errors(mock_llm, llm_records):
    m = mock_llm("mock/flaky")
    m.queue_failure("rate_limit")
    m.queue_failure("server_error")
    m.queue_response(content="third time lucky")
    response = await acomplete(endpoint="mock/flaky", messages=[{"role": "user", "content": "x"}])
    assert response.content == "third time lucky" and response.metadata["attempts"] == 3
    assert [r.error_code for r in llm_records.records] == ["LLM_RATE_LIMITED", "LLM_API_ERROR", None]

    m.queue_failure("bad_request")
    with pytest.raises(LLMAPIError):
        await acomplete(endpoint="mock/flaky", messages=[{"role": "user", "content": "x"}])
    for _ in range(3):
        m.queue_failure("timeout")
    with pytest.raises(LLMTimeout):
        await acomplete(endpoint="mock/flaky", messages=[{"role": "user", "content": "x"}])


async def test_a_hanging_mock_is_cut_by_the_timeout(mock_llm):
    m = mock_llm("mock/hang")
    for _ in range(3):
        m.queue_failure("hang")
    with pytest.raises(LLMTimeout):
        await acomplete(endpoint="mock/hang", messages=[{"role": "user", "content": "x"}], timeout=0.05)


async def test_smart_defaults_are_contextual_and_deterministic():
    async def ask(text, tools=None):
        return await acomplete(endpoint="mock/smart", messages=[{"role": "user", "content": text}], tools=tools)

    assert "Hello" in (await ask("hi there")).content
    assert (await ask("What is 6 * 7")).content.endswith("= 42")
    assert (await ask("Summarize: The sky is blue. Grass is green.")).content == "Summary: The sky is blue."
    first, second = await ask("Tell me about owls?"), await ask("Tell me about owls?")
    assert first.content == second.content and "owls" in first.content

    call = (await ask("Please calculate 12*(3+4)", [CALC])).tool_calls[0]
    assert call.name == "calculator" and json.loads(call.arguments) == {"expression": "12*(3+4)"}
    follow_up = await acomplete(
        endpoint="mock/smart",
        messages=[
            {"role": "user", "content": "Please calculate 12*(3+4)"},
            {"role": "assistant", "content": None, "tool_calls": [call.as_openai()]},
            {"role": "tool", "tool_call_id": call.id, "content": "84"},
        ],
        tools=[CALC],
    )
    assert follow_up.content == "The result is 84." and not follow_up.tool_calls


async def test_streaming_with_token_delay_and_usage(mock_llm):
    m = mock_llm("mock/stream")
    m.token_delay = 0.005
    m.queue_response(content="one two three")
    chunks = [c async for c in astream(endpoint="mock/stream", messages=[{"role": "user", "content": "go"}])]
    assert [c.delta for c in chunks if c.delta] == ["one ", "two ", "three"]
    final = chunks[-1].response
    assert final.usage.output_tokens > 0 and final.time_to_first_token_ms >= 4


@pytest.mark.django_db(transaction=False)
def test_sync_wrapper_and_token_count(mock_llm):
    mock_llm("mock/sync").queue_response(content="from sync")
    assert complete(endpoint="mock/sync", messages=[{"role": "user", "content": "x"}]).content == "from sync"
    assert count_tokens(endpoint="mock/sync", messages=[{"role": "user", "content": "x" * 400}]) >= 100


@pytest.mark.django_db(transaction=False)
def test_complete_from_a_celery_task(mock_llm):
    from agent_platform.celery import app

    @app.task(name="tests.llm_complete_probe")
    def probe(text):
        return complete(endpoint="mock/celery", messages=[{"role": "user", "content": text}]).content

    mock_llm("mock/celery").queue_response(content="from a task")
    assert probe.apply(args=["hi"]).get() == "from a task"
