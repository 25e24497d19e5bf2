"""Validation of a prompt's name, content and metadata: one module used by the services, the admin form and the API."""

from __future__ import annotations

import re
from typing import Any

from agent_platform.api.errors import PlatformError
from prompts.models import (
    PROMPT_NAME_PATTERN,
    Prompt,
)
from prompts.sandbox import (
    VARIABLE_TYPES,
    compile_template,
    inspect_template,
    type_matches,
)

RESERVED_NAMES = frozenset({"export", "import"})
CHAT_ROLES = ("system", "user", "assistant", "tool", "developer")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_TEMPLATE_CHARS = 200_000


def invalid(message: str, field: str, **details: Any) -> PlatformError:
    return PlatformError(message, code="VALIDATION_ERROR", field=field, details=details)


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not re.match(PROMPT_NAME_PATTERN, name):
        raise invalid(
            "name: use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.", "name"
        )
    if name in RESERVED_NAMES:
        raise invalid(f"name: '{name}' is reserved.", "name")
    return name


def _validate_variables_schema(variables: Any) -> list[dict[str, Any]]:
    if not isinstance(variables, list):
        raise invalid("variables must be a list of {name, type, required, default}.", "variables")
    seen: set[str] = set()
    normalized = []
    for i, spec in enumerate(variables):
        where = f"variables[{i}]"
        if not isinstance(spec, dict):
            raise invalid(f"{where} must be an object.", where)
        unknown = set(spec) - {"name", "type", "required", "default", "description"}
        if unknown:
            raise invalid(f"{where} has unknown keys: {', '.join(sorted(unknown))}.", where)
        name = spec.get("name")
        if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
            raise invalid(f"{where}.name must be an identifier (letters, digits, _).", f"{where}.name")
        if name in seen:
            raise invalid(f"{where}.name '{name}' is declared twice.", f"{where}.name")
        seen.add(name)
        kind = spec.get("type", "string")
        if kind not in VARIABLE_TYPES:
            raise invalid(f"{where}.type must be one of {', '.join(VARIABLE_TYPES)}.", f"{where}.type")
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise invalid(f"{where}.required must be true or false.", f"{where}.required")
        entry: dict[str, Any] = {"name": name, "type": kind, "required": required}
        if spec.get("default") is not None:
            if not type_matches(kind, spec["default"]):
                raise invalid(f"{where}.default must be of type {kind}.", f"{where}.default")
            entry["default"] = spec["default"]
        description = spec.get("description")
        if description:
            if not isinstance(description, str):
                raise invalid(f"{where}.description must be a string.", f"{where}.description")
            entry["description"] = description
        normalized.append(entry)
    return normalized


MAX_MESSAGES = 100


def _validate_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: a chat prompt needs a non-empty list of {role, content}.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"messages: at most {MAX_MESSAGES} messages.", "messages")
    normalized = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise invalid(f"{where} must be an object with 'role' and 'content' only.", where)
        if message.get("role") not in CHAT_ROLES:
            raise invalid(f"{where}.role must be one of {', '.join(CHAT_ROLES)}.", f"{where}.role")
        if not isinstance(message.get("content"), str):
            raise invalid(f"{where}.content must be a string.", f"{where}.content")
        normalized.append({"role": message["role"], "content": message["content"]})
    return normalized


def validate_content(
    *,
    template_type: str,
    text: str,
    messages: Any,
    variables: Any,
    variables_given: bool = True,
) -> dict[str, Any]:
    """Check a version's content; return it normalized. Compiles every template (syntax → PROMPT_TEMPLATE_INVALID
    with line/column/message_index) and checks that each variable the templates use is declared. Without an
    explicit schema (`variables_given=False`), undeclared variables are added as required strings."""
    if template_type not in Prompt.TemplateType.values:
        raise invalid("template_type must be 'text' or 'chat'.", "template_type")
    if not isinstance(text, str):
        raise invalid("text must be a string.", "text")
    schema = _validate_variables_schema(variables if variables is not None else [])
    sources: list[tuple[str, dict[str, Any]]]
    if template_type == Prompt.TemplateType.CHAT:
        messages = _validate_messages(messages)
        text = ""
        sources = [(m["content"], {"message_index": i, "role": m["role"]}) for i, m in enumerate(messages)]
    else:
        if not text.strip():
            raise invalid("text: a text prompt needs a template.", "text")
        messages = []
        sources = [(text, {})]
    if sum(len(s) for s, _ in sources) > MAX_TEMPLATE_CHARS:
        raise invalid(f"The template is longer than {MAX_TEMPLATE_CHARS} characters.", "text")
    used: dict[str, str] = {}
    for source, where in sources:
        compile_template(source, where=where)
        for name, kind in inspect_template(source, where=where).items():
            used.setdefault(name, kind)
    declared = {spec["name"] for spec in schema}
    for name, kind in used.items():
        if name in declared:
            continue
        if variables_given:
            raise PlatformError(
                f"The template uses variable '{name}', which is not declared in the variables schema.",
                code="PROMPT_VARIABLE_MISSING",
                field="variables",
                details={"variable": name},
            )
        schema.append({"name": name, "type": kind, "required": True})
    return {"template_type": template_type, "text": text, "messages": messages, "variables": schema}


def validate_meta(
    *, tags: Any, params: Any, model_endpoint: Any, description: Any, requires_approval: Any
) -> dict[str, Any]:
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in tags):
        raise invalid("tags must be a list of strings of 1-50 characters.", "tags")
    if not isinstance(params, dict):
        raise invalid("params must be an object.", "params")
    if not isinstance(model_endpoint, str) or len(model_endpoint) > 200:
        raise invalid("model_endpoint must be a string of at most 200 characters.", "model_endpoint")
    if not isinstance(description, str):
        raise invalid("description must be a string.", "description")
    if not isinstance(requires_approval, bool):
        raise invalid("requires_approval must be true or false.", "requires_approval")
    return {
        "tags": list(dict.fromkeys(tags)),
        "params": params,
        "model_endpoint": model_endpoint,
        "description": description,
        "requires_approval": requires_approval,
    }
