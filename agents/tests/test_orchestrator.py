"""The tool-calling loop and planning mode, driven by the scripted in-process mock model."""

import asyncio
import json

import pytest

from agent_platform.observability.hooks import Observer, hub
from agents.orchestrator import AgentSpec, Orchestrator, parse_plan
from agents.tools.base import Tool
from agents.tools.registry import ToolRegistry, registry

pytestmark = pytest.mark.django_db


def spec(**kw):
    base = {
        "slug": "helper",
        "model_endpoint": "mock/scripted",
        "system_prompt": "Be helpful.",
        "tools": ["calculator"],
    }
    base.update(kw)
    return AgentSpec(**base)


async def collect(orch):
    return [e async for e in orch.events()]


def user(text):
    return [{"role": "user", "content": text}]


class SpanCollector(Observer):
    name = "test-spans"

    def __init__(self):
        self.spans = []

    def on_span(self, record):
        self.spans.append(record)


@pytest.fixture
def spans():
    collector = SpanCollector()
    hub.register(collector)
    yield collector
    hub.unregister(collector)


async def test_tool_call_then_answer_streams_typed_sequenced_events(scripted, spans):
    scripted.queue_response(tool_calls=[{"id": "c1", "name": "calculator", "arguments": {"expression": "6*7"}}])
    scripted.queue_response(content="The answer is 42.")
    orch = Orchestrator(spec(), user("what is 6*7?"), run_id="r1")
    events = await collect(orch)

    types = [e.type for e in events]
    assert types[0] == "run_started" and types[-1] == "final"
    assert "tool_call" in types and "tool_result" in types and "token" in types
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    result = next(e for e in events if e.type == "tool_result")
    assert result.data["ok"] is True and result.data["result"] == 42
    assert "".join(e.data["text"] for e in events if e.type == "token") == "The answer is 42."
    assert events[-1].data["output"] == "The answer is 42."
    assert events[-1].data["llm_calls"] == 2
    # the model saw the tool result on its second call
    second = scripted.calls[1].messages
    assert second[-1]["role"] == "tool" and json.loads(second[-1]["content"]) == 42
    # one agent_run span, with the tool span as its child, in one trace
    run_span = next(s for s in spans.spans if s.kind == "agent_run")
    tool_span = next(s for s in spans.spans if s.kind == "tool")
    assert tool_span.trace_id == run_span.trace_id and tool_span.parent_span_id == run_span.span_id
    assert run_span.caller.agent_slug == "helper" and run_span.caller.run_id == "r1"


async def test_invalid_arguments_fail_the_run_with_tool_arguments_invalid(scripted):
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expr": "1+1"}}])
    orch = Orchestrator(spec(), user("add"))
    events = await collect(orch)
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "TOOL_ARGUMENTS_INVALID"
    assert "expression" in events[-1].data["message"]
    assert orch.error.code == "TOOL_ARGUMENTS_INVALID"


async def test_arguments_that_are_not_json_fail_with_tool_arguments_invalid(scripted):
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": "{not json"}])
    events = await collect(Orchestrator(spec(), user("add")))
    assert events[-1].data["code"] == "TOOL_ARGUMENTS_INVALID"


async def test_a_tool_the_agent_does_not_list_is_refused(scripted):
    scripted.queue_response(tool_calls=[{"name": "current_time", "arguments": {}}])
    events = await collect(Orchestrator(spec(tools=["calculator"]), user("time?")))
    result = next(e for e in events if e.type == "tool_result")
    assert result.data["ok"] is False and result.data["error"]["code"] == "TOOL_NOT_ALLOWED"
    assert events[-1].type == "error" and events[-1].data["code"] == "TOOL_NOT_ALLOWED"


class SlowTool(Tool):
    name = "slow"
    description = "Sleeps."
    parameters = {"type": "object", "properties": {}}
    timeout_seconds = 0.05

    async def run(self, arguments, context):
        await asyncio.sleep(5)


async def test_a_tool_that_overruns_its_timeout_fails_the_run_with_tool_timeout(scripted):
    reg = ToolRegistry()
    reg.register(SlowTool)
    scripted.queue_response(tool_calls=[{"name": "slow", "arguments": {}}])
    events = await collect(Orchestrator(spec(tools=["slow"]), user("go"), tool_registry=reg))
    assert events[-1].type == "error" and events[-1].data["code"] == "TOOL_TIMEOUT"


async def test_a_tool_that_raises_fails_the_run_with_its_message(scripted):
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "1/0"}}])
    events = await collect(Orchestrator(spec(), user("1/0")))
    assert events[-1].data["code"] == "TOOL_EXECUTION_FAILED"
    assert "division by zero" in events[-1].data["message"]


async def test_the_iteration_limit_stops_a_model_that_keeps_calling_tools(scripted):
    for _ in range(5):
        scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "1+1"}}])
    events = await collect(Orchestrator(spec(max_iterations=3), user("loop")))
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "RUN_LIMIT_EXCEEDED"
    assert events[-1].data["details"] == {"limit": "iterations", "max": 3}
    assert len(scripted.calls) == 3


async def test_the_token_limit_stops_the_run(scripted):
    scripted.queue_response(
        tool_calls=[{"name": "calculator", "arguments": {"expression": "1+1"}}],
        usage={"input_tokens": 400, "output_tokens": 200},
    )
    scripted.queue_response(content="done")
    events = await collect(Orchestrator(spec(max_total_tokens=500), user("x")))
    assert events[-1].data["code"] == "RUN_LIMIT_EXCEEDED"
    assert events[-1].data["details"]["limit"] == "total_tokens"


async def test_the_wall_time_limit_stops_the_run(scripted):
    scripted.queue_response(content="slow answer", delay=2)
    events = await collect(Orchestrator(spec(max_wall_seconds=0.2), user("x")))
    assert events[-1].data["code"] == "RUN_LIMIT_EXCEEDED"
    assert events[-1].data["details"]["limit"] == "wall_seconds"


async def test_a_failed_model_call_fails_the_run_with_the_llm_code(scripted):
    for _ in range(5):
        scripted.queue_failure("bad_request")
    events = await collect(Orchestrator(spec(), user("x")))
    assert events[-1].type == "error"
    assert events[-1].data["code"].startswith("LLM_")


async def test_several_tool_calls_in_one_turn_all_run(scripted):
    scripted.queue_response(
        tool_calls=[
            {"id": "a", "name": "calculator", "arguments": {"expression": "2+2"}},
            {"id": "b", "name": "calculator", "arguments": {"expression": "3*3"}},
        ]
    )
    scripted.queue_response(content="4 and 9")
    events = await collect(Orchestrator(spec(), user("both")))
    results = {e.data["id"]: e.data["result"] for e in events if e.type == "tool_result"}
    assert results == {"a": 4, "b": 9}
    assert events[-1].type == "final"


# --- call_agent -------------------------------------------------------------------------------------------------


async def test_call_agent_runs_another_agent_and_counts_its_tokens(scripted):
    async def loader(slug):
        assert slug == "expert"
        return spec(slug="expert", tools=[])

    scripted.queue_response(tool_calls=[{"name": "call_agent", "arguments": {"agent": "expert", "input": "hi"}}])
    scripted.queue_response(content="expert says hello")  # the expert's answer
    scripted.queue_response(content="The expert said hello.")
    orch = Orchestrator(spec(tools=["call_agent"]), user("ask the expert"), agent_loader=loader)
    events = await collect(orch)
    result = next(e for e in events if e.type == "tool_result")
    assert result.data["result"] == {"agent": "expert", "answer": "expert says hello"}
    assert events[-1].type == "final" and events[-1].data["llm_calls"] == 3


async def test_call_agent_depth_is_limited(scripted):
    async def loader(slug):
        return spec(slug=slug, tools=["call_agent"])

    # every agent keeps delegating to another one
    for i in range(10):
        scripted.queue_response(tool_calls=[{"name": "call_agent", "arguments": {"agent": f"a{i}", "input": "go"}}])
    events = await collect(Orchestrator(spec(tools=["call_agent"]), user("go"), agent_loader=loader))
    assert events[-1].type == "error"
    assert "RUN_LIMIT_EXCEEDED" in json.dumps(events[-1].data)


# --- planning mode -----------------------------------------------------------------------------------------------


class Rendezvous(Tool):
    """Both steps must be running at the same time to finish: proves the executor runs them in parallel."""

    name = "rendezvous"
    description = "Waits for its partner."
    parameters = {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}
    timeout_seconds = 2.0
    arrived: set = set()
    both: asyncio.Event | None = None

    async def run(self, arguments, context):
        cls = type(self)
        cls.arrived.add(arguments["who"])
        if len(cls.arrived) == 2:
            cls.both.set()
        await cls.both.wait()
        return f"{arguments['who']} met"


async def test_plan_runs_independent_steps_in_parallel_then_answers(scripted, spans):
    reg = ToolRegistry()
    reg.register(Rendezvous)
    Rendezvous.arrived = set()
    Rendezvous.both = asyncio.Event()
    plan = {
        "steps": [
            {"id": "a", "description": "left", "tool": "rendezvous", "arguments": {"who": "a"}},
            {"id": "b", "description": "right", "tool": "rendezvous", "arguments": {"who": "b"}},
            {"id": "c", "description": "combine", "depends_on": ["a", "b"]},
        ]
    }
    scripted.queue_response(content=f"Here is the plan:\n```json\n{json.dumps(plan)}\n```")
    scripted.queue_response(content="combined a and b")  # step c (model step)
    scripted.queue_response(content="Both met; combined.")  # final answer
    orch = Orchestrator(spec(mode="plan", tools=["rendezvous"]), user("do it"), tool_registry=reg)
    events = await collect(orch)

    assert events[-1].type == "final", events[-1].data
    assert events[-1].data["output"] == "Both met; combined."
    steps = [e.data for e in events if e.type == "step" and e.data.get("phase") == "step"]
    succeeded = [s["id"] for s in steps if s["status"] == "succeeded"]
    assert set(succeeded[:2]) == {"a", "b"} and succeeded[2] == "c"
    # step c saw both results
    assert "a met" in scripted.calls[1].messages[-1]["content"] and "b met" in scripted.calls[1].messages[-1]["content"]
    assert len([s for s in spans.spans if s.kind == "workflow_step"]) == 3


async def test_plan_replans_once_after_a_failed_step(scripted):
    bad = {"steps": [{"id": "a", "description": "divide", "tool": "calculator", "arguments": {"expression": "1/0"}}]}
    good = {"steps": [{"id": "b", "description": "add", "tool": "calculator", "arguments": {"expression": "1+1"}}]}
    scripted.queue_response(content=json.dumps(bad))
    scripted.queue_response(content=json.dumps(good))
    scripted.queue_response(content="It is 2.")
    events = await collect(Orchestrator(spec(mode="plan"), user("compute")))
    assert any(e.type == "step" and e.data.get("phase") == "replan" for e in events)
    assert "TOOL_EXECUTION_FAILED" in scripted.calls[1].messages[-1]["content"]  # the failure went back as feedback
    assert events[-1].type == "final" and events[-1].data["output"] == "It is 2."


async def test_plan_fails_when_the_second_plan_fails_too(scripted):
    scripted.queue_response(content="no plan here")
    scripted.queue_response(content='{"steps": [{"id": "a", "depends_on": ["a"]}]}')
    events = await collect(Orchestrator(spec(mode="plan"), user("compute")))
    assert events[-1].type == "error" and events[-1].data["code"] == "AGENT_EXECUTION_FAILED"


def test_parse_plan_rejects_unknown_dependencies_and_cycles():
    from agent_platform.api.errors import PlatformError

    with pytest.raises(PlatformError, match="unknown step"):
        parse_plan('{"steps": [{"id": "a", "depends_on": ["zz"]}]}')
    with pytest.raises(PlatformError, match="cycle"):
        parse_plan('{"steps": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}]}')
    steps = parse_plan('{"steps": [{"id": "a"}, {"id": "b", "depends_on": ["a"]}]}')
    assert [s["id"] for s in steps] == ["a", "b"]


def test_builtin_tools_are_registered():
    assert {"calculator", "current_time", "prompt_lookup", "call_agent"} <= set(registry.names())
