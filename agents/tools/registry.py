"""The tool registry: tools register their class; the orchestrator looks them up and executes them safely."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import jsonschema
from channels.db import database_sync_to_async

from agent_platform.api.errors import PlatformError
from agent_platform.observability.hooks import SpanKind
from agent_platform.observability.spans import start_span
from agents.tools.base import Tool, ToolContext, ToolError

_MAX_RESULT_CHARS = 20_000


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, type[Tool]] = {}
        self._lock = threading.Lock()

    def register(self, tool_class: type[Tool]) -> type[Tool]:
        """Register a tool class (usable as a class decorator). A later registration of the same name replaces it."""
        if not tool_class.name or not isinstance(tool_class.name, str):
            raise ValueError(f"{tool_class.__name__} has no name")
        jsonschema.Draft202012Validator.check_schema(tool_class.parameters)
        with self._lock:
            self._tools = {**self._tools, tool_class.name: tool_class}
        return tool_class

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tools = {k: v for k, v in self._tools.items() if k != name}

    def get(self, name: str) -> type[Tool]:
        try:
            return self._tools[name]
        except KeyError:
            raise PlatformError(
                f"No tool named {name!r} is registered.", code="TOOL_NOT_FOUND", field="tools"
            ) from None

    def has(self, name: str) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def list(self) -> builtins.list[type[Tool]]:
        return [self._tools[name] for name in self.names()]

    def specs(self, names: builtins.list[str]) -> builtins.list[dict[str, Any]]:
        return [self.get(name).spec() for name in names]


registry = ToolRegistry()


def register_tool(tool_class: type[Tool]) -> type[Tool]:
    """Class decorator for sites: `@register_tool class MyTool(Tool): ...`."""
    return registry.register(tool_class)


@dataclass
class ToolOutcome:
    ok: bool
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0

    def as_message_content(self) -> str:
        if self.ok:
            return self.result if isinstance(self.result, str) else json.dumps(self.result, default=str)
        return json.dumps({"error": {"code": self.error_code, "message": self.error_message}})


def parse_arguments(raw: str | dict | None, tool_name: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise PlatformError(
            f"Arguments for tool {tool_name!r} are not valid JSON: {exc}",
            code="TOOL_ARGUMENTS_INVALID",
            field="arguments",
            details={"tool": tool_name},
        ) from None
    if not isinstance(value, dict):
        raise PlatformError(
            f"Arguments for tool {tool_name!r} must be a JSON object.",
            code="TOOL_ARGUMENTS_INVALID",
            field="arguments",
            details={"tool": tool_name},
        )
    return value


def validate_arguments(tool_class: type[Tool], arguments: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(tool_class.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise PlatformError(
            f"Arguments for tool {tool_class.name!r} are invalid at {path}: {first.message}",
            code="TOOL_ARGUMENTS_INVALID",
            field=f"arguments.{path}" if path != "(root)" else "arguments",
            details={"tool": tool_class.name, "errors": [e.message for e in errors[:5]]},
        )


async def execute_tool(
    *,
    name: str,
    arguments: str | dict | None,
    allowed: list[str],
    context: ToolContext,
    tool_registry: ToolRegistry | None = None,
) -> ToolOutcome:
    """Check, validate and run one tool call inside a tool span. Never raises: failures come back as an outcome."""
    reg = tool_registry or registry
    started = time.perf_counter()
    with start_span(kind=SpanKind.TOOL, name=f"tool:{name}", input={"arguments": arguments}) as span:
        try:
            if name not in allowed:
                raise PlatformError(
                    f"Agent {context.agent_slug!r} may not call tool {name!r}; "
                    f"it may call: {', '.join(allowed) or 'none'}.",
                    code="TOOL_NOT_ALLOWED",
                    field="tool",
                    details={"tool": name},
                )
            tool_class = reg.get(name)
            parsed = parse_arguments(arguments, name)
            validate_arguments(tool_class, parsed)
            tool = tool_class()
            if inspect.iscoroutinefunction(tool.run):
                call = tool.run(parsed, context)
            else:
                # on a thread of its own, which gives its database connection back to the pool afterwards
                call = database_sync_to_async(tool.run, thread_sensitive=False)(parsed, context)
            try:
                result = await asyncio.wait_for(call, timeout=tool_class.timeout_seconds)
            except TimeoutError:
                raise PlatformError(
                    f"Tool {name!r} did not finish within {tool_class.timeout_seconds:g} s.",
                    code="TOOL_TIMEOUT",
                    details={"tool": name},
                ) from None
            except PlatformError:
                raise
            except ToolError as exc:
                raise PlatformError(f"Tool {name!r} failed: {exc}", code="TOOL_EXECUTION_FAILED") from None
            except Exception as exc:
                raise PlatformError(
                    f"Tool {name!r} failed: {type(exc).__name__}: {exc}", code="TOOL_EXECUTION_FAILED"
                ) from None
            if isinstance(result, str) and len(result) > _MAX_RESULT_CHARS:
                result = result[:_MAX_RESULT_CHARS] + "…"
            span.set_output(result)
            return ToolOutcome(ok=True, result=result, duration_ms=(time.perf_counter() - started) * 1000)
        except PlatformError as exc:
            span.set_error(code=exc.code, message=exc.message)
            return ToolOutcome(
                ok=False,
                error_code=exc.code,
                error_message=exc.message,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
