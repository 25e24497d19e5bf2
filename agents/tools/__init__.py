"""Tools agents can call. Sites add their own with `@register_tool` on a `Tool` subclass (or list dotted paths of
tool classes in the `AGENT_TOOLS` setting)."""

from agents.tools.base import Tool, ToolContext, ToolError
from agents.tools.registry import ToolOutcome, ToolRegistry, execute_tool, register_tool, registry

__all__ = [
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "execute_tool",
    "register_tool",
    "registry",
]
