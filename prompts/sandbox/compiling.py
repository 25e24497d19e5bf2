"""Compiling and inspecting a template: cached compiles, syntax errors with their line and column, used variables."""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import TemplateAssertionError

from agent_platform.api.errors import PlatformError
from prompts.sandbox.environment import ENV, RESERVED_GLOBALS
from prompts.sandbox.limits import (
    RenderLimitExceeded,
    TemplateTooComplex,
    compile_deadline,
    current_budget,
    default_limits,
)


def _column(source: str, lineno: int, needle: str | None) -> int:
    lines = source.splitlines() or [""]
    line = lines[min(max(lineno, 1), len(lines)) - 1]
    if needle:
        index = line.find(needle)
        if index >= 0:
            return index + 1
    return len(line) + 1 if needle is not None else 1


def _field(where: dict[str, Any]) -> str:
    if "message_index" in where:
        return f"messages[{where['message_index']}].content"
    return "text"


def _syntax_error(error: TemplateSyntaxError, source: str, where: dict[str, Any]) -> PlatformError:
    lineno = error.lineno or 1
    message = error.message or "syntax error"
    column = 1
    absolute = re.search(r"unexpected char .* at (\d+)$", message)
    token = getattr(error, "failed_token", None)
    if isinstance(error, TemplateTooComplex):
        column = _column(source, lineno, None)
    elif absolute:
        pos = int(absolute.group(1))
        column = pos - (source.rfind("\n", 0, pos) + 1) + 1
        lineno = source.count("\n", 0, pos) + 1
    elif token is not None and token[1] == "eof":
        lines = source.splitlines() or [""]
        lineno = len(lines)
        column = len(lines[-1]) + 1
    elif token is not None:
        lineno = token[0] or lineno
        column = _column(source, lineno, str(token[2]) if token[2] not in (None, "") else "")
    elif isinstance(error, TemplateAssertionError):
        quoted = re.search(r"'([^']+)'", message)
        column = _column(source, lineno, quoted.group(1) if quoted else "")
    else:
        column = _column(source, lineno, "")
    location = where_text(where)
    details = {**where, "line": lineno, "column": column, "error": message}
    if isinstance(error, TemplateTooComplex):
        details["limit"] = error.limit
    return PlatformError(
        f"Template syntax error{location} at line {lineno}, column {column}: {message}",
        code="PROMPT_TEMPLATE_INVALID",
        field=_field(where),
        details=details,
    )


def _compile_failure(exc: BaseException, where: dict[str, Any]) -> PlatformError:
    """The compile step ran out of time, or the generated code hit one of Python's own limits."""
    if isinstance(exc, RenderLimitExceeded):
        return PlatformError(
            f"Compiling the template{where_text(where)} stopped: it took longer than "
            f"{default_limits().timeout_s * 1000:.0f} ms.",
            code="PROMPT_RENDER_LIMIT",
            field=_field(where),
            details={**where, "limit": "time", "stage": "compile"},
        )
    return PlatformError(
        f"The template{where_text(where)} is nested too deeply to compile ({type(exc).__name__}).",
        code="PROMPT_TEMPLATE_INVALID",
        field=_field(where),
        details={**where, "limit": "nesting", "error": f"{type(exc).__name__}: {exc}"},
    )


def where_text(where: dict[str, Any]) -> str:
    if "message_index" in where:
        return f" in messages[{where['message_index']}]"
    return ""


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> Template:
    return ENV.from_string(source)


_COMPILE_FAILURES = (RenderLimitExceeded, RecursionError, SyntaxError, MemoryError)


def _compile_timeout() -> float:
    budget = current_budget.get()
    return budget.deadline if budget is not None else time.perf_counter() + default_limits().timeout_s


def compile_template(source: str, *, where: dict[str, Any] | None = None) -> Template:
    """The compiled template for `source` (cached); `PROMPT_TEMPLATE_INVALID` with line and column if it fails,
    or if it nests too deeply; `PROMPT_RENDER_LIMIT` if compiling takes longer than the render timeout."""
    token = compile_deadline.set(_compile_timeout())
    try:
        return _compile_cached(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where or {}) from None
    except _COMPILE_FAILURES as exc:
        raise _compile_failure(exc, where or {}) from None
    finally:
        compile_deadline.reset(token)


_NO_LOADER_NODES = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)


def inspect_template(source: str, *, where: dict[str, Any] | None = None) -> dict[str, str]:
    """The variables a template reads from its context (minus the sandbox's own globals), each with a guessed
    type: `list` for a variable a `{% for %}` iterates over, else `string`. Refuses `include`/`extends`/`import`
    (prompts are self-contained; there is no template loader)."""
    where = where or {}
    token = compile_deadline.set(_compile_timeout())
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where) from None
    except _COMPILE_FAILURES as exc:
        raise _compile_failure(exc, where) from None
    finally:
        compile_deadline.reset(token)
    for node in tree.find_all(_NO_LOADER_NODES):
        keyword = {"Include": "include", "Extends": "extends", "Import": "import", "FromImport": "from"}[
            type(node).__name__
        ]
        column = _column(source, node.lineno, keyword)
        raise PlatformError(
            f"Template error{where_text(where)} at line {node.lineno}, column {column}: "
            f"'{{% {keyword} %}}' is not supported; a prompt is self-contained.",
            code="PROMPT_TEMPLATE_INVALID",
            field=_field(where),
            details={**where, "line": node.lineno, "column": column, "error": f"{keyword} not supported"},
        )
    names = set(meta.find_undeclared_variables(tree)) - RESERVED_GLOBALS
    iterated: set[str] = set()
    for loop in tree.find_all(nodes.For):
        target: nodes.Node | None = loop.iter
        if isinstance(target, nodes.Filter) and target.name == "loop_guard":
            target = target.node
        if isinstance(target, nodes.Name):
            iterated.add(target.name)
    return {name: ("list" if name in iterated else "string") for name in sorted(names)}


def referenced_variables(source: str) -> set[str]:
    return set(inspect_template(source))
