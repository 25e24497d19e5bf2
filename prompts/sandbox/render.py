"""Rendering one template source under the budget, with errors that say where."""

from __future__ import annotations

import re
import time
from typing import Any

from jinja2 import Template, UndefinedError
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SecurityError

from agent_platform.api.errors import PlatformError
from prompts.sandbox.compiling import compile_template, where_text
from prompts.sandbox.limits import RenderBudget, RenderLimitExceeded, RenderLimits, current_budget, default_limits

_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")


def _template_line(error: BaseException) -> int | None:
    tb = error.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_source(
    source: str,
    context: dict[str, Any],
    *,
    limits: RenderLimits | None = None,
    where: dict[str, Any] | None = None,
    template: Template | None = None,
    budget: RenderBudget | None = None,
) -> str:
    """Render one template source (text prompt, or one chat message) within the limits (of `budget` when several
    sources share one: the messages of a chat prompt)."""
    where = where or {}
    if template is None:
        template = compile_template(source, where=where)
    if budget is None:
        budget = RenderBudget(limits or default_limits())
    limits = budget.limits
    token = current_budget.set(budget)
    try:
        parts: list[str] = []
        for chunk in template.generate(context):
            budget.size += len(chunk)
            if budget.size > limits.max_chars:
                raise RenderLimitExceeded(f"output is longer than {limits.max_chars} characters", limit="size")
            if time.perf_counter() > budget.deadline:
                budget.timeout()
            parts.append(chunk)
        return "".join(parts)
    except RenderLimitExceeded as exc:
        raise PlatformError(
            f"Rendering{where_text(where)} stopped: {exc}.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": exc.limit, "line": _template_line(exc)},
        ) from None
    except SecurityError as exc:
        raise PlatformError(
            f"The template{where_text(where)} tried to reach Python internals: {exc}",
            code="PROMPT_SANDBOX_VIOLATION",
            details={**where, "line": _template_line(exc)},
        ) from None
    except UndefinedError as exc:
        message = str(exc)
        match = _UNDEFINED_NAME.match(message)
        name = match.group(1) if match else None
        raise PlatformError(
            f"Variable '{name}' is missing{where_text(where)}."
            if name
            else f"Undefined value{where_text(where)}: {message}",
            code="PROMPT_VARIABLE_MISSING",
            field=name,
            details={**where, "variable": name, "line": _template_line(exc), "error": message},
        ) from None
    except RecursionError:
        raise PlatformError(
            f"Rendering{where_text(where)} stopped: recursion too deep.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": "recursion"},
        ) from None
    except MemoryError:
        raise PlatformError(
            f"Rendering{where_text(where)} stopped: out of memory.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": "size"},
        ) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        line = _template_line(exc)
        raise PlatformError(
            f"The template failed{where_text(where)}"
            + (f" at line {line}" if line else "")
            + f": {type(exc).__name__}: {exc}",
            code="PROMPT_TEMPLATE_INVALID",
            details={**where, "line": line, "error": f"{type(exc).__name__}: {exc}"},
        ) from None
    finally:
        current_budget.reset(token)
