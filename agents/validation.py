"""Validation of an agent definition's fields: the rules the API serializer, the services and the catalog share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError

from agents.models import AgentDefinition
from agents.tools.registry import registry as tool_registry

ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
MAX_TOOLS = 50
MEMORY_LIMITS = ("max_context_tokens", "max_messages")


def tools_validate(value: Any) -> list[str]:
    """Registered tool names, each once, in the order given."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Must be a list of tool names.")
    if len(value) > MAX_TOOLS:
        raise ValidationError(f"At most {MAX_TOOLS} tools.")
    unknown = [name for name in value if not tool_registry.has(name)]
    if unknown:
        raise ValidationError(f"Unknown tool(s): {', '.join(unknown)}. Registered: {', '.join(tool_registry.names())}.")
    return list(dict.fromkeys(value))


def model_endpoint_validate(value: str) -> str:
    if value and not ENDPOINT_NAME.match(value):
        raise ValidationError("Not a valid endpoint name.")
    return value


def memory_validate(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("Must be an object.")
    for key in MEMORY_LIMITS:
        if key in value and (not isinstance(value[key], int) or isinstance(value[key], bool) or value[key] < 1):
            raise ValidationError(f"{key} must be a positive integer.")
    return value


def endpoint_or_prompt_validate(*, model_endpoint: str, system_prompt_name: str) -> None:
    if not model_endpoint and not system_prompt_name:
        raise ValidationError({"model_endpoint": "Required unless a stored system prompt names one."})


def _checked(errors: dict[str, list[str]], field: str, check: Callable[[Any], Any], value: Any) -> Any:
    """`check(value)`, or `value` unchanged with the check's messages added to `errors` (once per field)."""
    if field in errors:
        return value
    try:
        return check(value)
    except ValidationError as exc:
        errors[field] = exc.messages
        return value


def agent_definition_errors(agent: AgentDefinition) -> dict[str, list[str]]:
    """Every problem of `agent` as {field: [message, ...]} (empty when it may be saved): the model's own field
    checks (`full_clean`, which also converts values to their field's type) and the rules above."""
    errors: dict[str, list[str]] = {}
    try:
        agent.full_clean(exclude=["owner", "team"], validate_unique=True)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    agent.tools = _checked(errors, "tools", tools_validate, agent.tools)
    _checked(errors, "model_endpoint", model_endpoint_validate, agent.model_endpoint)
    _checked(errors, "memory", memory_validate, agent.memory)
    try:
        endpoint_or_prompt_validate(model_endpoint=agent.model_endpoint, system_prompt_name=agent.system_prompt_name)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    return errors
