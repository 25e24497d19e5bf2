"""The orchestrator: runs one agent on one conversation and yields a typed, sequenced stream of events.

Two modes:
- tools (default): the tool-calling loop, model → tool calls → results → model, until the model answers without
  tool calls, bounded by `max_iterations`, `max_total_tokens` and `max_wall_seconds`;
- plan: the model writes a JSON plan of steps with dependencies (`TaskPlanner`); the executor runs steps whose
  dependencies are done in parallel (`asyncio.gather`); on a failed step the model re-plans once with the failure as
  feedback; then the model writes the final answer from the step results.

Events: run_started, token, tool_call, tool_result, step, final, error. Exactly one of final/error ends the stream.
The orchestrator touches no database: the runner (`agents.services`) gives it an `AgentSpec` and the messages, and
stores what it yields. The whole run is one `agent_run` span; every LLM call inside is attributed to the agent,
run, conversation and prompt version through `bind_caller`, which also carries the agent's PII policy: the spans and
LLM call records of a masking agent's run are stored masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agent_platform.api.errors import PlatformError
from agent_platform.llm import client as llm
from agent_platform.llm.types import LLMResponse
from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import SpanKind
from agent_platform.observability.spans import start_span
from agents.tools.base import ToolContext
from agents.tools.registry import ToolRegistry, execute_tool
from agents.tools.registry import registry as default_registry

EVENT_TYPES = ("run_started", "token", "tool_call", "tool_result", "step", "final", "error")
MAX_PLAN_STEPS = 20


@dataclass
class AgentSpec:
    """A snapshot of an agent definition with its system prompt resolved: all the orchestrator needs."""

    slug: str
    model_endpoint: str
    system_prompt: str = ""
    id: int | None = None
    name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    mode: str = "tools"
    max_iterations: int = 10
    max_total_tokens: int = 100_000
    max_wall_seconds: float = 300.0
    pii_mask: bool = False
    prompt_name: str | None = None
    prompt_version: int | None = None
    ab_variant: str | None = None
    team_id: int | None = None


@dataclass
class AgentEvent:
    type: str
    data: dict[str, Any]
    seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "data": self.data}


@dataclass
class Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | None = None
    llm_calls: int = 0
    iterations: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_response(self, response: LLMResponse) -> None:
        self.input_tokens += response.usage.input_tokens
        self.output_tokens += response.usage.output_tokens
        self.llm_calls += 1
        if response.cost is not None:
            self.cost = (self.cost or Decimal(0)) + Decimal(response.cost)

    def add_cost(self, cost: Decimal | None) -> None:
        if cost is not None:
            self.cost = (self.cost or Decimal(0)) + Decimal(cost)

    def add(self, other: Totals) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.llm_calls += other.llm_calls
        if other.cost is not None:
            self.cost = (self.cost or Decimal(0)) + other.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost": str(self.cost) if self.cost is not None else None,
            "llm_calls": self.llm_calls,
            "iterations": self.iterations,
        }


def limit_exceeded(limit: str, maximum: Any, message: str) -> PlatformError:
    return PlatformError(message, code="RUN_LIMIT_EXCEEDED", details={"limit": limit, "max": maximum})


AgentLoader = Callable[[str], Awaitable[AgentSpec]]


class Orchestrator:
    """Run `spec` on `messages` (the conversation context, without the system prompt). Iterate `events()`."""

    def __init__(
        self,
        spec: AgentSpec,
        messages: list[dict[str, Any]],
        *,
        run_id: str | None = None,
        conversation_id: str | None = None,
        user_id: int | None = None,
        trace_id: str | None = None,
        depth: int = 0,
        agent_loader: AgentLoader | None = None,
        tool_registry: ToolRegistry | None = None,
        stream: bool = True,
        seq_start: int = 1,
        summarize: list[dict[str, Any]] | None = None,
    ) -> None:
        self.spec = spec
        self.messages = list(messages)
        self.run_id = run_id
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.trace_id = trace_id
        self.depth = depth
        self.agent_loader = agent_loader
        self.registry = tool_registry or default_registry
        self.stream = stream
        self.summarize = summarize
        self.totals = Totals()
        self.output: str = ""
        self.error: PlatformError | None = None
        self._seq = seq_start - 1
        self._queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self._started = 0.0

    # --- events -------------------------------------------------------------------------------------------
    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        self._seq += 1
        self._queue.put_nowait(AgentEvent(type=type_, data=data, seq=self._seq))

    async def events(self) -> AsyncIterator[AgentEvent]:
        driver = asyncio.create_task(self._drive())
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    break
                yield event
            await driver
        finally:
            if not driver.done():
                driver.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await driver

    async def run(self) -> str:
        """Run to completion without looking at events; return the final answer or raise the run's error."""
        async for _event in self.events():
            pass
        if self.error is not None:
            raise self.error
        return self.output

    # --- driver ---------------------------------------------------------------------------------------------
    async def _drive(self) -> None:
        spec = self.spec
        self._started = time.monotonic()
        try:
            with (
                bind_caller(
                    agent_id=spec.id,
                    agent_slug=spec.slug,
                    run_id=self.run_id,
                    conversation_id=self.conversation_id,
                    prompt_name=spec.prompt_name,
                    prompt_version=spec.prompt_version,
                    ab_variant=spec.ab_variant,
                    team_id=spec.team_id,
                    pii_mask=True if spec.pii_mask else None,  # a masking run's sub-agents store masked too
                ),
                start_span(
                    kind=SpanKind.AGENT_RUN,
                    name=f"agent:{spec.slug}",
                    input={"messages": self.messages[-1:]},
                    attributes={"agent_slug": spec.slug, "mode": spec.mode, "depth": self.depth},
                    trace_id=self.trace_id if self.depth == 0 else None,
                ) as span,
            ):
                self.trace_id = span.trace_id
                self._emit(
                    "run_started",
                    {"agent": spec.slug, "run_id": self.run_id, "trace_id": span.trace_id, "mode": spec.mode},
                )
                try:
                    async with asyncio.timeout(spec.max_wall_seconds):
                        if self.summarize:
                            await self._summarize_history()
                        if spec.mode == "plan":
                            await self._plan_and_execute()
                        else:
                            await self._tool_loop(self._initial_messages())
                except TimeoutError:
                    raise limit_exceeded(
                        "wall_seconds",
                        spec.max_wall_seconds,
                        f"The run took longer than its limit of {spec.max_wall_seconds:g} s.",
                    ) from None
                span.set_output(self.output)
                span.set_attributes(**self.totals.as_dict())
                self._emit("final", {"output": self.output, **self.totals.as_dict(), "trace_id": span.trace_id})
        except PlatformError as exc:
            self.error = exc
            self._emit(
                "error",
                {
                    "code": exc.code,
                    "message": exc.message,
                    "details": exc.details,
                    **self.totals.as_dict(),
                    "trace_id": self.trace_id,
                },
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not a user error: fail the run, never a silent success
            self.error = PlatformError(f"The agent failed: {type(exc).__name__}: {exc}", code="AGENT_EXECUTION_FAILED")
            self._emit("error", {"code": self.error.code, "message": self.error.message, **self.totals.as_dict()})
        finally:
            self._queue.put_nowait(None)

    def _initial_messages(self) -> list[dict[str, Any]]:
        system = [{"role": "system", "content": self.spec.system_prompt}] if self.spec.system_prompt else []
        return [*system, *self.messages]

    async def _summarize_history(self) -> None:
        """Replace the messages trimmed out of the context window by a short summary (memory "summarize")."""
        transcript = "\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in self.summarize or [])
        response = await self._call_model(
            [
                {
                    "role": "system",
                    "content": "Summarise this earlier part of a conversation in a few sentences. Keep names, "
                    "numbers, decisions and open questions.",
                },
                {"role": "user", "content": transcript[-20_000:]},
            ],
            tools=None,
            stream=False,
        )
        self.messages.insert(
            0, {"role": "system", "content": f"Summary of the earlier conversation: {response.content}"}
        )

    # --- model calls ------------------------------------------------------------------------------------------
    def _check_tokens(self) -> None:
        if self.totals.total_tokens > self.spec.max_total_tokens:
            raise limit_exceeded(
                "total_tokens",
                self.spec.max_total_tokens,
                f"The run used {self.totals.total_tokens} tokens, over its limit of {self.spec.max_total_tokens}.",
            )

    async def _call_model(
        self, messages: list[dict[str, Any]], *, tools: list[dict] | None, stream: bool, emit_tokens: bool = True
    ) -> LLMResponse:
        kwargs: dict[str, Any] = {
            "endpoint": self.spec.model_endpoint,
            "messages": messages,
            "tools": tools or None,
            "params": dict(self.spec.parameters) or None,
            "pii_mask": self.spec.pii_mask,
        }
        response: LLMResponse | None = None
        try:
            if stream:
                async for chunk in llm.astream(**kwargs):
                    if chunk.delta and emit_tokens:
                        self._emit("token", {"text": chunk.delta})
                    if chunk.response is not None:
                        response = chunk.response
                if response is None:
                    raise PlatformError("The model's stream ended without a response.", code="LLM_API_ERROR")
            else:
                response = await llm.acomplete(**kwargs)
        except PlatformError as exc:
            self.totals.add_cost(getattr(exc, "cost", None))  # a failed call's billed attempts count in the run too
            raise
        self.totals.add_response(response)
        self._check_tokens()
        return response

    # --- tool loop ---------------------------------------------------------------------------------------------
    def _tool_context(self) -> ToolContext:
        return ToolContext(
            agent_slug=self.spec.slug,
            run_id=self.run_id,
            user_id=self.user_id,
            depth=self.depth,
            call_agent=self._call_agent if self.agent_loader else None,
        )

    async def _run_tool(self, call_id: str, name: str, arguments: Any) -> dict[str, Any]:
        outcome = await execute_tool(
            name=name,
            arguments=arguments,
            allowed=self.spec.tools,
            context=self._tool_context(),
            tool_registry=self.registry,
        )
        data: dict[str, Any] = {"id": call_id, "name": name, "ok": outcome.ok, "duration_ms": outcome.duration_ms}
        if outcome.ok:
            data["result"] = outcome.result
        else:
            data["error"] = {"code": outcome.error_code, "message": outcome.error_message}
        self._emit("tool_result", data)
        if not outcome.ok:
            raise PlatformError(outcome.error_message or "", code=outcome.error_code, details={"tool": name})
        return {"role": "tool", "tool_call_id": call_id, "name": name, "content": outcome.as_message_content()}

    async def _tool_loop(self, messages: list[dict[str, Any]]) -> None:
        specs = self.registry.specs([t for t in self.spec.tools if self.registry.has(t)]) if self.spec.tools else None
        for _ in range(self.spec.max_iterations):
            self.totals.iterations += 1
            response = await self._call_model(messages, tools=specs, stream=self.stream)
            if not response.tool_calls:
                self.output = response.content or ""
                return
            messages.append(response.as_message())
            for call in response.tool_calls:
                self._emit("tool_call", {"id": call.id, "name": call.name, "arguments": call.arguments})
            results = await asyncio.gather(
                *(self._run_tool(call.id, call.name, call.arguments) for call in response.tool_calls),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            messages.extend(results)  # type: ignore[arg-type]
        raise limit_exceeded(
            "iterations",
            self.spec.max_iterations,
            f"The agent still wanted to call tools after {self.spec.max_iterations} iterations (its max_iterations).",
        )

    async def _call_agent(self, slug: str, text: str) -> str:
        assert self.agent_loader is not None
        sub_spec = await self.agent_loader(slug)
        child = Orchestrator(
            sub_spec,
            [{"role": "user", "content": text}],
            run_id=self.run_id,
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            depth=self.depth + 1,
            agent_loader=self.agent_loader,
            tool_registry=self.registry,
            stream=False,
        )
        try:
            return await child.run()
        finally:
            self.totals.add(child.totals)
            self._check_tokens()

    # --- planning mode ---------------------------------------------------------------------------------------
    async def _plan_and_execute(self) -> None:
        request = self.messages[-1].get("content") or "" if self.messages else ""
        results: dict[str, Any] = {}
        feedback: str | None = None
        for attempt in (1, 2):
            self.totals.iterations += 1
            try:
                steps = await self._make_plan(request, results, feedback)
                self._emit("step", {"phase": "plan", "attempt": attempt, "steps": steps})
                await self._execute_plan(steps, results)
                break
            except PlatformError as exc:
                if attempt == 2 or exc.code in ("RUN_LIMIT_EXCEEDED", "BUDGET_EXCEEDED"):
                    raise
                feedback = f"{exc.code}: {exc.message}"
                self._emit("step", {"phase": "replan", "reason": feedback})
        self.totals.iterations += 1
        summary = json.dumps(results, default=str)[:20_000]
        messages = [
            *self._initial_messages(),
            {
                "role": "system",
                "content": "The plan has been executed. Step results (JSON): "
                + summary
                + "\nWrite the final answer to the user's request from these results.",
            },
        ]
        response = await self._call_model(messages, tools=None, stream=self.stream)
        self.output = response.content or ""

    async def _make_plan(self, request: str, done: dict[str, Any], feedback: str | None) -> list[dict[str, Any]]:
        tools = [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in (self.registry.get(n) for n in self.spec.tools if self.registry.has(n))
        ]
        instructions = (
            "Break the user's request into steps. Reply with JSON only: "
            '{"steps": [{"id": "s1", "description": "...", "tool": "<tool name or null>", '
            '"arguments": {...}, "depends_on": ["<step id>", ...]}]}. '
            "Steps that do not depend on each other run in parallel. A step without a tool is answered by the model. "
            f"Available tools: {json.dumps(tools)}"
        )
        if done:
            instructions += (
                f"\nSteps already completed (reuse their ids in depends_on): {json.dumps(done, default=str)}"
            )
        if feedback:
            instructions += f"\nThe previous plan failed: {feedback}. Write a corrected plan."
        messages = [*self._initial_messages(), {"role": "system", "content": instructions}]
        response = await self._call_model(messages, tools=None, stream=False)
        return parse_plan(response.content, known=set(done))

    async def _execute_plan(self, steps: list[dict[str, Any]], results: dict[str, Any]) -> None:
        pending = {s["id"]: s for s in steps if s["id"] not in results}
        while pending:
            ready = [s for s in pending.values() if all(d in results for d in s["depends_on"])]
            if not ready:  # parse_plan rejects cycles; this guards against a dependency on a failed step
                raise PlatformError(
                    "The plan has steps whose dependencies cannot be met.", code="AGENT_EXECUTION_FAILED"
                )
            outcomes = await asyncio.gather(*(self._run_step(s, results) for s in ready), return_exceptions=True)
            failure: BaseException | None = None
            for step, outcome in zip(ready, outcomes, strict=True):
                pending.pop(step["id"])
                if isinstance(outcome, BaseException):
                    failure = failure or outcome
                else:
                    results[step["id"]] = outcome
            if failure is not None:
                raise failure

    async def _run_step(self, step: dict[str, Any], results: dict[str, Any]) -> Any:
        self._emit("step", {"phase": "step", "id": step["id"], "status": "started", "description": step["description"]})
        with start_span(kind=SpanKind.WORKFLOW_STEP, name=f"step:{step['id']}", input=step) as span:
            try:
                if step.get("tool"):
                    call_id = f"{step['id']}-call"
                    self._emit("tool_call", {"id": call_id, "name": step["tool"], "arguments": step["arguments"]})
                    message = await self._run_tool(call_id, step["tool"], step["arguments"])
                    value: Any = message["content"]
                else:
                    context = {d: results[d] for d in step["depends_on"]}
                    messages = [
                        *self._initial_messages(),
                        {
                            "role": "system",
                            "content": f"Do only this step: {step['description']}\n"
                            f"Results of the steps it depends on (JSON): {json.dumps(context, default=str)}",
                        },
                    ]
                    value = (await self._call_model(messages, tools=None, stream=False)).content
            except PlatformError as exc:
                span.set_error(code=exc.code, message=exc.message)
                self._emit(
                    "step",
                    {
                        "phase": "step",
                        "id": step["id"],
                        "status": "failed",
                        "error": {"code": exc.code, "message": exc.message},
                    },
                )
                raise
            span.set_output(value)
        self._emit("step", {"phase": "step", "id": step["id"], "status": "succeeded", "result": value})
        return value


_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)


def parse_plan(text: str | None, *, known: set[str] | None = None) -> list[dict[str, Any]]:
    """Validate the model's plan: JSON with unique step ids, known dependencies and no cycles."""

    def invalid(message: str) -> PlatformError:
        return PlatformError(f"The model's plan is invalid: {message}", code="AGENT_EXECUTION_FAILED")

    match = _JSON_BLOCK.search(text or "")
    if not match:
        raise invalid("no JSON object in the reply")
    try:
        data = json.loads(match.group(0))
    except ValueError as exc:
        raise invalid(f"not JSON ({exc})") from None
    raw_steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(raw_steps, list) or not raw_steps:
        raise invalid('"steps" must be a non-empty list')
    if len(raw_steps) > MAX_PLAN_STEPS:
        raise invalid(f"more than {MAX_PLAN_STEPS} steps")
    known = set(known or ())
    steps: list[dict[str, Any]] = []
    ids: set[str] = set()
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise invalid(f"step {index} is not an object")
        step_id = str(raw.get("id") or f"s{index + 1}")
        if step_id in ids:
            raise invalid(f"duplicate step id {step_id!r}")
        ids.add(step_id)
        depends = raw.get("depends_on") or []
        if not isinstance(depends, list):
            raise invalid(f"step {step_id!r}: depends_on must be a list")
        arguments = raw.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise invalid(f"step {step_id!r}: arguments must be an object")
        steps.append(
            {
                "id": step_id,
                "description": str(raw.get("description") or ""),
                "tool": raw.get("tool") or None,
                "arguments": arguments,
                "depends_on": [str(d) for d in depends],
            }
        )
    for step in steps:
        for dep in step["depends_on"]:
            if dep not in ids and dep not in known:
                raise invalid(f"step {step['id']!r} depends on unknown step {dep!r}")
    # cycle check (Kahn)
    remaining = {s["id"]: {d for d in s["depends_on"] if d in ids} for s in steps}
    while remaining:
        free = [k for k, deps in remaining.items() if not deps]
        if not free:
            raise invalid("the steps' dependencies form a cycle")
        for k in free:
            remaining.pop(k)
        for deps in remaining.values():
            deps.difference_update(free)
    return steps
