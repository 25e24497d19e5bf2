"""Built-in tools that work offline: calculator, current_time, prompt_lookup, call_agent."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asgiref.sync import sync_to_async

from agent_platform.api.errors import PlatformError
from agents.tools.base import Tool, ToolContext, ToolError
from agents.tools.registry import register_tool

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e300


def safe_eval(expression: str) -> float | int:
    """Evaluate arithmetic by walking the AST: numbers, + - * / // % **, parentheses, a few math functions."""
    if len(expression) > 500:
        raise ToolError("expression is longer than 500 characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ToolError("exponent too large")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            if isinstance(value, complex):
                raise ToolError("complex results are not supported")
            if abs(value) > _MAX_MAGNITUDE:
                raise ToolError("result too large")
            return value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
            and len(node.args) <= 5
        ):
            try:
                return _FUNCTIONS[node.func.id](*[walk(arg) for arg in node.args])
            except (ValueError, TypeError, OverflowError) as exc:
                raise ToolError(f"{node.func.id}: {exc}") from None
        raise ToolError(f"unsupported element in expression: {type(node).__name__}")

    result = walk(tree)
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return int(result)
    return result


@register_tool
class Calculator(Tool):
    name = "calculator"
    description = "Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, log, sin, pi...)."
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 500}},
        "required": ["expression"],
        "additionalProperties": False,
    }
    timeout_seconds = 2.0

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        return safe_eval(arguments["expression"])


@register_tool
class CurrentTime(Tool):
    name = "current_time"
    description = "The current date and time, in UTC or in an IANA time zone such as Europe/Paris."
    parameters = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "maxLength": 64}},
        "additionalProperties": False,
    }
    timeout_seconds = 2.0

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        name = arguments.get("timezone") or "UTC"
        try:
            zone = UTC if name == "UTC" else ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown time zone {name!r}") from None
        now = datetime.now(zone)
        return {"timezone": name, "iso": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A")}


def _render_prompt(
    name: str, variables: dict, label: str | None, version: int | None, context: ToolContext
) -> dict[str, Any]:
    """Render as the run's caller and the calling agent's owner and team (each must be allowed to read the prompt;
    one they may not read is PROMPT_NOT_FOUND, as if it did not exist — see prompts.selectors.PromptReaders)."""
    try:
        from prompts.selectors import PromptReaders, render_prompt
    except ImportError:
        raise ToolError("the prompt store is not available") from None
    from agents.models import AgentDefinition

    found = AgentDefinition.objects.filter(slug=context.agent_slug).values("owner_id", "team_id").first()
    agent: dict[str, Any] = dict(found) if found else {}
    readers = PromptReaders.of(user_ids=(context.user_id, agent.get("owner_id")), team_ids=(agent.get("team_id"),))
    rendered = render_prompt(name, variables, label=label, version=version, readers=readers)
    return {
        "name": rendered.name,
        "version": rendered.version,
        "label": rendered.label,
        "text": getattr(rendered, "text", None),
        "messages": getattr(rendered, "messages", None),
    }


@register_tool
class PromptLookup(Tool):
    name = "prompt_lookup"
    description = "Render a prompt from the prompt store by name (and optionally label or version) with variables."
    parameters = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "label": {"type": "string", "maxLength": 100},
            "version": {"type": "integer", "minimum": 1},
            "variables": {"type": "object"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    timeout_seconds = 5.0

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        return await sync_to_async(_render_prompt)(
            arguments["name"],
            arguments.get("variables") or {},
            arguments.get("label"),
            arguments.get("version"),
            context,
        )


MAX_AGENT_DEPTH = 3


@register_tool
class CallAgent(Tool):
    name = "call_agent"
    description = "Ask another agent (by slug) a question and get its final answer."
    parameters = {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "minLength": 1, "maxLength": 100},
            "input": {"type": "string", "minLength": 1, "maxLength": 20_000},
        },
        "required": ["agent", "input"],
        "additionalProperties": False,
    }
    timeout_seconds = 120.0

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        if context.depth >= MAX_AGENT_DEPTH:
            raise PlatformError(
                f"call_agent is nested {context.depth} levels deep; the limit is {MAX_AGENT_DEPTH}.",
                code="RUN_LIMIT_EXCEEDED",
                details={"limit": "agent_depth", "max": MAX_AGENT_DEPTH},
            )
        if arguments["agent"] == context.agent_slug:
            raise ToolError("an agent may not call itself")
        if context.call_agent is None:
            raise ToolError("calling another agent is not available here")
        return {"agent": arguments["agent"], "answer": await context.call_agent(arguments["agent"], arguments["input"])}
