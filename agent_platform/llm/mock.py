"""The mock provider: offline, deterministic, scriptable. Any endpoint whose model starts with `mock/` uses it.

    m = mock_provider_for("mock/scripted")
    m.queue_response(content="hi")
    m.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "2+2"}}])
    m.queue_failure("rate_limit")          # error | server_error | timeout | hang | rate_limit | bad_request | drop
    m.calls                                # one MockCall per request (messages, tools, params, stream)
    m.token_delay = 0.01                   # seconds between streamed tokens
    m.reset()

With nothing queued it answers with a smart, contextual, deterministic reply; when tools are offered and the last
user message asks for one (e.g. arithmetic and a calculator tool), it calls the tool, then answers from the result.

Where the scripts, call logs and delays live is LLM_MOCK_STORE: `memory` (the default) keeps them in this
process; `cache` keeps them in Django's shared cache (Redis on the full stack), so that what a test scripts is
what a Celery worker process answers, and the calls the worker made are what the test reads.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from agent_platform.llm.errors import LLMAPIError, LLMRateLimited, LLMTimeout
from agent_platform.llm.providers import (
    Provider,
    ProviderResult,
    estimate_message_tokens,
    estimate_tokens,
    text_of,
)
from agent_platform.llm.types import LLMUsage, ToolCall

_response_ids = itertools.count(1)
MAX_HISTORY = 1000  # calls kept per mock

FAILURES = ("error", "server_error", "timeout", "hang", "rate_limit", "bad_request", "drop")


@dataclass
class MockCall:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    params: dict[str, Any]
    stream: bool
    endpoint: str

    @property
    def last_user_message(self) -> str:
        return next((text_of(m.get("content")) for m in reversed(self.messages) if m.get("role") == "user"), "")


@dataclass
class _Scripted:
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    failure: str | None = None
    retry_after: float | None = None
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    delay: float = 0.0


class _MemoryStore:
    """One mock's scripts, calls and options in this process (LLM_MOCK_STORE=memory)."""

    def __init__(self) -> None:
        self._queue: collections.deque[_Scripted] = collections.deque()
        self._calls: list[MockCall] = []
        self._options: dict[str, float] = {}
        self._lock = threading.Lock()

    def push(self, script: _Scripted) -> None:
        with self._lock:
            self._queue.append(script)

    def take(self, call: MockCall) -> _Scripted | None:
        """Record the call and pop the next script (None when nothing is queued)."""
        with self._lock:
            self._calls.append(call)
            del self._calls[:-MAX_HISTORY]  # a long-running demo server must not grow without bound
            return self._queue.popleft() if self._queue else None

    def pending(self) -> int:
        return len(self._queue)

    def calls(self) -> list[MockCall]:
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def option(self, name: str) -> float:
        return self._options.get(name, 0.0)

    def set_option(self, name: str, value: float) -> None:
        self._options[name] = value

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._calls.clear()
            self._options.clear()


class _CacheStore:
    """The same in Django's shared cache (LLM_MOCK_STORE=cache), for every process using that cache.

    A read-modify-write holds a lock made with `cache.add`, so two processes never take the same script. Keys carry
    a generation that `reset_all_mocks` moves on, which resets mocks this process never touched, too."""

    TIMEOUT = 24 * 3600  # a forgotten script expires

    def __init__(self, model: str) -> None:
        self.model = model

    def _key(self, part: str) -> str:
        return f"llm-mock:{_cache_generation()}:{self.model}:{part}"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        from django.core.cache import cache

        key, token = f"llm-mock:lock:{self.model}", secrets.token_hex(8)
        deadline = time.monotonic() + 10
        while not cache.add(key, token, timeout=10):  # the timeout frees a lock whose holder died
            if time.monotonic() > deadline:
                raise RuntimeError(f"mock {self.model}: its store stayed locked for 10 s")
            time.sleep(0.002)
        try:
            yield
        finally:
            if cache.get(key) == token:
                cache.delete(key)

    def _get(self, part: str, default: Any) -> Any:
        from django.core.cache import cache

        return cache.get(self._key(part), default)

    def _set(self, part: str, value: Any) -> None:
        from django.core.cache import cache

        cache.set(self._key(part), value, timeout=self.TIMEOUT)

    def push(self, script: _Scripted) -> None:
        with self._locked():
            self._set("queue", [*self._get("queue", []), script])

    def take(self, call: MockCall) -> _Scripted | None:
        with self._locked():
            self._set("calls", [*self._get("calls", []), call][-MAX_HISTORY:])
            queue = self._get("queue", [])
            if not queue:
                return None
            self._set("queue", queue[1:])
            return queue[0]

    def pending(self) -> int:
        return len(self._get("queue", []))

    def calls(self) -> list[MockCall]:
        return list(self._get("calls", []))

    def clear_calls(self) -> None:
        with self._locked():
            self._set("calls", [])

    def option(self, name: str) -> float:
        return self._get("options", {}).get(name, 0.0)

    def set_option(self, name: str, value: float) -> None:
        with self._locked():
            self._set("options", {**self._get("options", {}), name: value})

    def reset(self) -> None:
        from django.core.cache import cache

        with self._locked():
            cache.delete_many([self._key("queue"), self._key("calls"), self._key("options")])


def _uses_cache() -> bool:
    return getattr(settings, "LLM_MOCK_STORE", "memory") == "cache"


def _cache_generation() -> int:
    from django.core.cache import cache

    return cache.get("llm-mock:generation", 0)


def _next_response_id() -> int:
    if not _uses_cache():
        return next(_response_ids)
    from django.core.cache import cache

    cache.add("llm-mock:response-ids", 0, timeout=None)
    return cache.incr("llm-mock:response-ids")


class MockLLMProvider(Provider):
    name = "mock"

    def __init__(self, model: str = "mock/default") -> None:
        self.model = model
        self._memory = _MemoryStore()
        self._cache = _CacheStore(model)

    @property
    def _store(self) -> _MemoryStore | _CacheStore:
        return self._cache if _uses_cache() else self._memory

    # -- scripting ---------------------------------------------------------------------------------------
    def queue_response(
        self,
        content: str | None = None,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        usage: dict[str, int] | None = None,
        finish_reason: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self._store.push(_Scripted(content, tool_calls, None, None, usage, finish_reason, delay))

    def queue_responses(self, contents: list[str]) -> None:
        for content in contents:
            self.queue_response(content=content)

    def queue_failure(self, kind: str = "error", *, retry_after: float | None = None) -> None:
        if kind not in FAILURES:
            raise ValueError(f"unknown failure {kind!r}; one of {', '.join(FAILURES)}")
        self._store.push(_Scripted(failure=kind, retry_after=retry_after))

    simulate_failure = queue_failure

    @property
    def token_delay(self) -> float:
        """Seconds between streamed tokens."""
        return self._store.option("token_delay")

    @token_delay.setter
    def token_delay(self, value: float) -> None:
        self._store.set_option("token_delay", value)

    @property
    def latency(self) -> float:
        """Seconds before each answer (a script's own `delay` wins)."""
        return self._store.option("latency")

    @latency.setter
    def latency(self, value: float) -> None:
        self._store.set_option("latency", value)

    @property
    def pending(self) -> int:
        return self._store.pending()

    @property
    def calls(self) -> list[MockCall]:
        """One MockCall per request, oldest first (a copy)."""
        return self._store.calls()

    call_history = calls

    def clear_history(self) -> None:
        self._store.clear_calls()

    def reset(self) -> None:
        self._store.reset()

    # -- provider ----------------------------------------------------------------------------------------
    def _take(self, endpoint, messages, tools, params, stream) -> _Scripted:
        return self._store.take(MockCall(list(messages), tools, dict(params), stream, endpoint.name)) or _Scripted()

    async def _fail(self, script: _Scripted, endpoint) -> None:
        details = {"endpoint": endpoint.name, "model": endpoint.model, "provider": "mock"}
        kind = script.failure
        if kind == "rate_limit":
            raise LLMRateLimited(
                f"Model endpoint '{endpoint.name}' is rate limited (mock).",
                retry_after=script.retry_after,
                details=details,
            )
        if kind == "timeout":
            raise LLMTimeout(f"Model endpoint '{endpoint.name}' timed out (mock).", details=details)
        if kind == "hang":
            await asyncio.sleep(3600)
        if kind == "bad_request":
            raise LLMAPIError(
                f"Model endpoint '{endpoint.name}' rejected the request (mock).", retryable=False, details=details
            )
        raise LLMAPIError(f"Model endpoint '{endpoint.name}' failed (mock {kind}).", retryable=True, details=details)

    def _result(self, script: _Scripted, messages, tools) -> ProviderResult:
        if script.content is None and script.tool_calls is None:
            content, calls = smart_reply(messages, tools)
        else:
            content = script.content or ""
            calls = [_tool_call(index, spec) for index, spec in enumerate(script.tool_calls or [])]
        usage = LLMUsage(
            input_tokens=estimate_message_tokens(messages),
            output_tokens=estimate_tokens(content) + sum(estimate_tokens(c.arguments) + 2 for c in calls),
        )
        if script.usage:
            usage = LLMUsage(
                input_tokens=script.usage.get("input_tokens", usage.input_tokens),
                output_tokens=script.usage.get("output_tokens", usage.output_tokens),
                cached_tokens=script.usage.get("cached_tokens", 0),
                reasoning_tokens=script.usage.get("reasoning_tokens", 0),
            )
        return ProviderResult(
            content=content,
            tool_calls=calls,
            finish_reason=script.finish_reason or ("tool_calls" if calls else "stop"),
            usage=usage,
            model=self.model,
            response_id=f"mock-{_next_response_id()}",
            metadata={"mock": True},
        )

    async def complete(self, *, endpoint, api_key, messages, tools, params, timeout) -> ProviderResult:
        script = self._take(endpoint, messages, tools, params, False)
        delay = script.delay or self.latency
        if delay:
            await asyncio.sleep(delay)
        if script.failure:
            await self._fail(script, endpoint)
        return self._result(script, messages, tools)

    async def stream(self, *, endpoint, api_key, messages, tools, params, timeout):
        script = self._take(endpoint, messages, tools, params, True)
        delay = script.delay or self.latency
        if delay:
            await asyncio.sleep(delay)
        if script.failure and script.failure != "drop":
            await self._fail(script, endpoint)
        result = self._result(script, messages, tools)
        pieces = re.findall(r"\S+\s*|\s+", result.content)
        token_delay = self.token_delay  # read once: in the cache store each read is a round trip
        for position, piece in enumerate(pieces):
            if token_delay:
                await asyncio.sleep(token_delay)
            yield piece
            if script.failure == "drop" and position >= 1:
                raise LLMAPIError(f"Model endpoint '{endpoint.name}' dropped the stream (mock).", retryable=True)
        yield result


def _tool_call(index: int, spec: dict[str, Any]) -> ToolCall:
    arguments = spec.get("arguments", {})
    return ToolCall(
        id=spec.get("id") or f"call_mock_{index}",
        name=spec["name"],
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
    )


# --- smart default replies -------------------------------------------------------------------------------------

_ARITHMETIC = re.compile(r"[-+(]?\d[\d\s.]*(?:\s*[-+*/^%]\s*[(]?\s*-?\d[\d.]*\s*[)]?)+")
_REPLY_WITH = re.compile(r"\breply with (?:only )?(?:the )?(?:single )?word:?\s*[\"“']?([\w-]+)", re.I)
_GREETING = re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|greetings)\b", re.I)


def _tool_names(tools: list[dict[str, Any]] | None) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for tool in tools or ():
        function = tool.get("function") or {}
        if function.get("name"):
            found.append((function["name"], function))
    return found


def _arguments_for(function: dict[str, Any], text: str, expression: str | None) -> dict[str, Any]:
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    required = list(schema.get("required") or properties.keys())
    arguments: dict[str, Any] = {}
    for name in required:
        prop = properties.get(name) or {}
        kind = prop.get("type", "string")
        if kind in ("number", "integer"):
            numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
            arguments[name] = (int if kind == "integer" else float)(float(numbers[0])) if numbers else 0
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "array":
            arguments[name] = []
        elif kind == "object":
            arguments[name] = {}
        elif prop.get("enum"):
            arguments[name] = prop["enum"][0]
        else:
            arguments[name] = expression if expression and name in {"expression", "expr", "formula"} else text[:200]
    return arguments


def _choose_tool(text: str, tools) -> tuple[str, dict[str, Any]] | None:
    lowered = text.lower()
    expression = None
    match = _ARITHMETIC.search(text)
    if match:
        expression = match.group(0).strip()
    for name, function in _tool_names(tools):
        words = {name.lower(), *re.split(r"[_\-\s]+", name.lower())}
        if expression and any(w in {"calculator", "calc", "calculate", "math", "eval"} for w in words):
            return name, _arguments_for(function, text, expression)
        if any(len(w) > 3 and w in lowered for w in words):
            return name, _arguments_for(function, text, expression)
        if any(w in {"search", "lookup"} for w in words) and re.search(r"\b(search|find|look up|lookup)\b", lowered):
            return name, _arguments_for(function, text, expression)
    return None


def smart_reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> tuple[str, list[ToolCall]]:
    """A deterministic, contextual reply (and a tool call where the request clearly asks for one)."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        result = text_of(last.get("content")).strip()
        return f"The result is {result}." if len(result) < 200 else f"Here is what I found: {result[:400]}", []
    user_text = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "").strip()
    if tools:
        chosen = _choose_tool(user_text, tools)
        if chosen:
            name, arguments = chosen
            digest = hashlib.sha256(f"{name}:{user_text}".encode()).hexdigest()[:12]
            return "", [ToolCall(id=f"call_{digest}", name=name, arguments=json.dumps(arguments))]
    lowered = user_text.lower()
    if not user_text:
        return "Hello! I am the mock assistant. How can I help?", []
    echo = _REPLY_WITH.search(user_text)
    if echo:
        return echo.group(1), []
    if _GREETING.match(user_text):
        return "Hello! I am the mock assistant, running offline. How can I help you today?", []
    if any(word in lowered for word in ("summarize", "summarise", "summary", "tl;dr")):
        body = user_text.split(":", 1)[-1].strip()
        first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0]
        return f"Summary: {first[:300]}", []
    if any(word in lowered for word in ("write a function", "code", "python", "implement")):
        return (
            "Here is a sketch:\n\n```python\ndef solution(*args):\n"
            '    """Mock implementation."""\n    return None\n```',
            [],
        )
    if "translate" in lowered:
        return f"(mock translation) {user_text.split(':', 1)[-1].strip()[:300]}", []
    match = _ARITHMETIC.search(user_text)
    if match:
        value = _safe_eval(match.group(0))
        if value is not None:
            return f"{match.group(0).strip()} = {value}", []
    if user_text.endswith("?"):
        topic = user_text.rstrip("?").strip()
        return (
            f"Good question. A short answer about “{topic[:120]}”: this is a mock reply, deterministic and offline.",
            [],
        )
    return f"Mock reply to: {user_text[:200]}", []


def _safe_eval(expression: str) -> float | int | None:
    import ast
    import operator

    ops: dict[type, Callable[..., Any]] = {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.Mod: operator.mod,
        ast.Pow: operator.pow,
        ast.USub: operator.neg,
        ast.UAdd: operator.pos,
    }

    def walk(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return ops[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.operand))
        raise ValueError("unsupported")

    try:
        value = walk(ast.parse(expression.replace("^", "**").strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return round(value, 10) if isinstance(value, float) else value


_providers: dict[str, MockLLMProvider] = {}
_providers_lock = threading.Lock()


def mock_provider_for(model: str) -> MockLLMProvider:
    """The process-wide mock for a model string (or endpoint name) such as `mock/scripted`."""
    provider = _providers.get(model)
    if provider is None:
        with _providers_lock:
            provider = _providers.setdefault(model, MockLLMProvider(model=model))
    return provider


def reset_all_mocks() -> None:
    """Empty every mock's scripts and calls (in the cache store, those of mocks only other processes used too)."""
    if _uses_cache():
        from django.core.cache import cache

        cache.add("llm-mock:generation", 0, timeout=None)
        cache.incr("llm-mock:generation")
        return
    for provider in list(_providers.values()):
        provider.reset()
