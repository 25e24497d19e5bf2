"""The tool interface: a name, a description, a JSON schema for its arguments, and `run`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class ToolContext:
    """What a tool may know about the run that calls it."""

    agent_slug: str = ""
    run_id: str | None = None
    user_id: int | None = None
    depth: int = 0  # how many call_agent levels deep this run is
    # Runs another agent to completion and returns its final answer (set by the orchestrator).
    call_agent: Callable[[str, str], Awaitable[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Tool:
    """Base class of every tool. Subclass, set `name`, `description`, `parameters`, implement `run`.

    `run(arguments, context)` may be `async def` or a plain `def` (plain ones run in a worker thread). It returns
    any JSON-serialisable value, or raises `ToolError` (or a `PlatformError`) to fail with a code.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}, "additionalProperties": False}
    timeout_seconds: ClassVar[float] = 10.0

    def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def spec(cls) -> dict[str, Any]:
        """The OpenAI-format tool spec sent to the model."""
        return {
            "type": "function",
            "function": {"name": cls.name, "description": cls.description, "parameters": cls.parameters},
        }


class ToolError(Exception):
    """A tool's own failure; the run fails with TOOL_EXECUTION_FAILED and this message."""
