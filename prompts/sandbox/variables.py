"""Binding variables to a template's schema: types checked, defaults applied, missing ones named."""

from __future__ import annotations

import math
from typing import Any

from agent_platform.api.errors import PlatformError

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list", "object")


def type_matches(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False


def bind_variables(schema: list[dict[str, Any]], values: dict[str, Any] | None) -> dict[str, Any]:
    """The template context: declared variables from `values`, defaults filled in, types checked.

    Undeclared keys are ignored (never reach the template). A required variable with no value and no default →
    `PROMPT_VARIABLE_MISSING`; a value of the wrong type → `PROMPT_VARIABLE_INVALID`; both name the variable.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise PlatformError("variables must be an object", code="PROMPT_VARIABLE_INVALID", field="variables")
    context: dict[str, Any] = {}
    for spec in schema:
        name = spec["name"]
        kind = spec.get("type", "string")
        if name in values and values[name] is not None:
            value = values[name]
        elif "default" in spec and spec["default"] is not None:
            value = spec["default"]
        elif spec.get("required", True):
            raise PlatformError(
                f"Variable '{name}' is required and has no value.",
                code="PROMPT_VARIABLE_MISSING",
                field=name,
                details={"variable": name},
            )
        else:
            context[name] = None  # optional, no value: falsy in `{% if %}`, never an undefined error
            continue
        if not type_matches(kind, value):
            raise PlatformError(
                f"Variable '{name}' must be of type {kind}, got {_type_name(value)}.",
                code="PROMPT_VARIABLE_INVALID",
                field=name,
                details={"variable": name, "expected": kind, "got": _type_name(value)},
            )
        context[name] = value
    return context


def _type_name(value: Any) -> str:
    for kind in ("boolean", "integer", "number", "string", "list", "object"):
        if type_matches(kind, value):
            return kind
    return "null" if value is None else type(value).__name__
