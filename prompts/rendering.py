"""Sandboxed Jinja2 rendering for prompts.

Templates run in an `ImmutableSandboxedEnvironment` with `StrictUndefined`, hardened further:

- **No Python internals**: the sandbox refuses `_`-prefixed and internal attributes (`__class__`, `__globals__`,
  `__subclasses__`, `_TemplateReference__context`, ...), through `.`/`[]`/`|attr` and through `str.format` fields;
  such an access raises `jinja2.sandbox.SecurityError` → `PROMPT_SANDBOX_VIOLATION`. Nothing from Django (settings,
  request) is ever put into the template context: only the prompt's declared variables.
- **Bounded output and time**: every loop's iterable is wrapped (by rewriting the parsed template) in a guard that
  counts iterations and watches the deadline; every call (`environment.call`) does the same; `range()` refuses more
  than `MAX_RANGE` items; `*`, `**`, `+`, `%` and `~` (concatenation), `str.format`, and the width-taking string
  methods and filters check the size of what they would build *before* building it; the output stream is cut off
  at `max_chars`. Any of these → `PROMPT_RENDER_LIMIT`.
- **Errors with locations**: syntax errors → `PROMPT_TEMPLATE_INVALID` with `line` and `column` (1-based;
  `message_index` for chat prompts); a missing variable → `PROMPT_VARIABLE_MISSING` naming it; a value of the wrong
  type for the schema → `PROMPT_VARIABLE_INVALID`.

Compiled templates are cached per source text (LRU), so rendering the same version again does not recompile.
"""

from __future__ import annotations

import math
import re
import time
import types
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import TemplateAssertionError, TemplateError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import generate_lorem_ipsum

from agent_platform.api.errors import PlatformError
from prompts import conf

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list", "object")
_CONTEXT_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})


# --- limits -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int = 100_000  # rendered output, per text / per chat message; also the cap on any built string
    timeout_s: float = 1.0  # wall time for one render
    max_range: int = 10_000  # items one range() may produce
    max_iterations: int = 200_000  # loop iterations + calls in one render


def default_limits() -> RenderLimits:
    return RenderLimits(
        max_chars=int(conf.get("PROMPT_RENDER_MAX_CHARS")),
        timeout_s=float(conf.get("PROMPT_RENDER_TIMEOUT_MS")) / 1000.0,
        max_range=int(conf.get("PROMPT_RENDER_MAX_RANGE")),
        max_iterations=int(conf.get("PROMPT_RENDER_MAX_ITERATIONS")),
    )


class RenderLimitExceeded(Exception):
    """Raised inside a render when a limit is hit (turned into `PROMPT_RENDER_LIMIT`)."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class RenderBudget:
    """Time, iterations and output size of one render; shared by all messages of a chat prompt."""

    __slots__ = ("deadline", "limits", "size", "ticks")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.perf_counter() + limits.timeout_s
        self.ticks = 0
        self.size = 0

    def tick(self, n: int = 1) -> None:
        self.ticks += n
        if self.ticks > self.limits.max_iterations:
            raise RenderLimitExceeded(
                f"the template ran more than {self.limits.max_iterations} loop iterations and calls",
                limit="iterations",
            )
        if not self.ticks & 0xFF and time.perf_counter() > self.deadline:
            self.timeout()

    def timeout(self) -> None:
        raise RenderLimitExceeded(f"rendering took longer than {self.limits.timeout_s * 1000:.0f} ms", limit="time")


_budget: ContextVar[RenderBudget | None] = ContextVar("prompt_render_budget", default=None)
_FALLBACK_LIMITS = RenderLimits()


def _limits() -> RenderLimits:
    budget = _budget.get()
    return budget.limits if budget is not None else _FALLBACK_LIMITS


def _tick(n: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick(n)


def _too_big(size: int, what: str) -> None:
    cap = _limits().max_chars
    if size > cap:
        raise RenderLimitExceeded(
            f"{what} would build {size} items/characters, more than the cap of {cap}", limit="size"
        )


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


_DIGITS = re.compile(r"\d+")
_NESTED_FORMAT_FIELD = re.compile(r"\{[^{}]*\{")


def _check_format_string(fmt: str, args: Iterable[Any], *, star: bool, what: str) -> None:
    """Widths/precisions written in a format string, or passed for `*` / nested `{}` fields, must stay under the cap."""
    for run in _DIGITS.findall(fmt):
        if len(run) > 12:
            _too_big(10**12, what)
        _too_big(int(run), what)
    if star:
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool):
                _too_big(abs(arg), what)


# --- guarded helpers exposed to templates ---------------------------------------------------------------------


def _guarded_range(*args: int) -> range:
    rng = range(*args)
    cap = _limits().max_range
    if len(rng) > cap:
        raise RenderLimitExceeded(f"range() would produce {len(rng)} items, more than {cap}", limit="range")
    return rng


def _small_lipsum(n: int = 5, html: bool = False, min: int = 20, max: int = 100) -> str:
    if n > 20 or max > 200:
        raise RenderLimitExceeded("lipsum() is limited to 20 paragraphs of at most 200 words", limit="size")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Wrapped around every `{% for %}` iterable by the AST rewrite below."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.tick()
        yield item


def _concat_guard(parts: list[Any]) -> str:
    """Replaces `a ~ b ~ c`: the size is checked before the string is built."""
    strings = [str(p) for p in parts]
    _too_big(sum(len(s) for s in strings), "concatenation (~)")
    return "".join(strings)


def _estimate_str_method(method: Any, args: tuple, kwargs: dict) -> int | None:
    """Upper bound of the length a width-taking `str` method would return, or None if it cannot grow its input."""
    s: str = method.__self__
    name = method.__name__
    values = list(args) + list(kwargs.values())
    if name in ("center", "ljust", "rjust", "zfill"):
        return max([len(s)] + [v for v in values[:1] if isinstance(v, int)])
    if name == "expandtabs":
        tabsize = values[0] if values and isinstance(values[0], int) else 8
        return len(s) + s.count("\t") * max(tabsize, 0)
    if name == "replace" and len(values) >= 2 and isinstance(values[0], str) and isinstance(values[1], str):
        occurrences = len(s) + 1 if values[0] == "" else s.count(values[0])
        if len(values) > 2 and isinstance(values[2], int) and values[2] >= 0:
            occurrences = min(occurrences, values[2])
        return len(s) + occurrences * len(values[1])
    if name == "join" and values and isinstance(values[0], (list, tuple)):
        items = values[0]
        return sum(len(x) if isinstance(x, str) else 0 for x in items) + len(s) * max(len(items) - 1, 0)
    return None


# --- filters wrapped with size checks --------------------------------------------------------------------------


def _guard_filter(name: str, func: Any) -> Any:
    """Wrap a builtin filter: pre-check the sizes the growing ones would build, post-check every result."""

    def precheck(args: tuple, kwargs: dict) -> None:
        # Filters decorated with pass_eval_context/pass_context/pass_environment get that object first.
        values = [a for a in args if not hasattr(a, "autoescape") and not hasattr(a, "environment")]
        if not values:
            return
        value = values[0]
        rest = values[1:] + list(kwargs.values())
        if name == "center":
            width = rest[0] if rest else 80
            if isinstance(width, int):
                _too_big(width, "|center")
        elif name == "indent" and isinstance(value, str):
            width = rest[0] if rest else 4
            width = len(width) if isinstance(width, str) else width
            if isinstance(width, int):
                _too_big(len(value) + (value.count("\n") + 1) * max(width, 0), "|indent")
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            old, new = str(rest[0]), str(rest[1])
            occurrences = len(value) + 1 if old == "" else value.count(old)
            _too_big(len(value) + occurrences * len(new), "|replace")
        elif name == "join" and isinstance(value, (list, tuple)):
            sep = str(rest[0]) if rest else ""
            _too_big(len(sep) * max(len(value) - 1, 0), "|join")
        elif name == "format" and isinstance(value, str):
            _check_format_string(value, rest, star="*" in value, what="|format")
        elif name == "wordwrap" and isinstance(value, str):
            wrapstring = rest[2] if len(rest) > 2 and isinstance(rest[2], str) else "\n"
            width = rest[0] if rest and isinstance(rest[0], int) and rest[0] > 0 else 79
            _too_big(len(value) + (len(value) // width + 1) * len(wrapstring), "|wordwrap")
        elif name == "tojson" and rest:
            indent = rest[0]
            if isinstance(indent, int) and indent > 64:
                _too_big(_limits().max_chars + 1, "|tojson indent")

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        precheck(args, kwargs)
        result = func(*args, **kwargs)
        size = _sized(result)
        if size is not None:
            _too_big(size, f"|{name}")
        return result

    return guarded


# --- the environment ------------------------------------------------------------------------------------------


class _LocatingParser(Parser):
    """Remembers the token the parser failed on, so syntax errors can carry a column."""

    def fail(self, msg: str, lineno: int | None = None, exc: type[TemplateSyntaxError] = TemplateSyntaxError):
        try:
            super().fail(msg, lineno, exc)
        except TemplateSyntaxError as error:
            current = self.stream.current
            error.failed_token = (current.lineno, current.type, current.value)  # type: ignore[attr-defined]
            raise


class PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
        )
        self.globals["range"] = _guarded_range
        self.globals["lipsum"] = _small_lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_loop_guard"] = _loop_guard
        self.filters["_concat_guard"] = _concat_guard

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _LocatingParser(self, source, name, filename).parse()
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_loop_guard", [], [], None, None, lineno=loop.lineno)
        for concat in tree.find_all(nodes.Concat):
            guarded = nodes.Filter(nodes.List(concat.nodes, lineno=concat.lineno), "_concat_guard", [], [], None, None)
            guarded.set_lineno(concat.lineno)
            concat.nodes = [guarded]
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(n, int):
                    _too_big(size * max(n, 0), "repetition (*)")
        elif operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            if big and left.bit_length() * right > 4096:
                raise RenderLimitExceeded("power (**) result would exceed 4096 bits", limit="size")
            if isinstance(left, float) or isinstance(right, float):
                try:
                    return math.pow(left, right)
                except (OverflowError, ValueError) as exc:
                    raise RenderLimitExceeded(f"power (**) failed: {exc}", limit="size") from None
        elif operator == "+":
            a, b = _sized(left), _sized(right)
            if a is not None and b is not None:
                _too_big(a + b, "addition (+)")
        elif operator == "%" and isinstance(left, str):
            args = right if isinstance(right, tuple) else (right,)
            _check_format_string(left, args, star="*" in left, what="formatting (%)")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(getattr(__obj, "__self__", None), str):
            estimate = _estimate_str_method(__obj, args, kwargs)
            if estimate is not None:
                _too_big(estimate, f"str.{__obj.__name__}()")
        result = ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        size = _sized(result)
        if size is not None:
            _too_big(size, "a call")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(attribute, str) and attribute.startswith("_"):
            return self._private(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument.startswith("_"):
            return self._private(obj, argument)
        return super().getitem(obj, argument)

    def _private(self, obj: Any, name: str) -> Any:
        """`_x` is only ever a key of a mapping (JSON input like `{"_id": 1}`), never an attribute, whether the
        attribute exists or not."""
        if isinstance(obj, dict):
            try:
                return obj[name]
            except LookupError:
                pass
        return self.unsafe_undefined(obj, name)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Refuse at once (the stock sandbox returns an undefined that only fails when used, which `|map` or
        `|list` can carry around silently)."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        nested = bool(_NESTED_FORMAT_FIELD.search(fmt))

        @wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            _tick()
            values = list(args) + list(kwargs.values())
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            _check_format_string(fmt, values, star=nested, what="str.format")
            result = wrapped(*args, **kwargs)
            _too_big(len(result), "str.format")
            return result

        return checked


ENV = PromptEnvironment()
RESERVED_GLOBALS = frozenset(ENV.globals) | _CONTEXT_NAMES


# --- compile, inspect ------------------------------------------------------------------------------------------


def _column(source: str, lineno: int, needle: str | None) -> int:
    lines = source.splitlines() or [""]
    line = lines[min(max(lineno, 1), len(lines)) - 1]
    if needle:
        index = line.find(needle)
        if index >= 0:
            return index + 1
    return len(line) + 1 if needle is not None else 1


def _syntax_error(error: TemplateSyntaxError, source: str, where: dict[str, Any]) -> PlatformError:
    lineno = error.lineno or 1
    message = error.message or "syntax error"
    column = 1
    absolute = re.search(r"unexpected char .* at (\d+)$", message)
    token = getattr(error, "failed_token", None)
    if absolute:
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
    location = _where_text(where)
    return PlatformError(
        f"Template syntax error{location} at line {lineno}, column {column}: {message}",
        code="PROMPT_TEMPLATE_INVALID",
        details={**where, "line": lineno, "column": column, "error": message},
    )


def _where_text(where: dict[str, Any]) -> str:
    if "message_index" in where:
        return f" in messages[{where['message_index']}]"
    return ""


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> Template:
    return ENV.from_string(source)


def compile_template(source: str, *, where: dict[str, Any] | None = None) -> Template:
    """The compiled template for `source` (cached); `PROMPT_TEMPLATE_INVALID` with line and column if it fails."""
    try:
        return _compile_cached(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where or {}) from None


_NO_LOADER_NODES = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)


def inspect_template(source: str, *, where: dict[str, Any] | None = None) -> dict[str, str]:
    """The variables a template reads from its context (minus the sandbox's own globals), each with a guessed
    type: `list` for a variable a `{% for %}` iterates over, else `string`. Refuses `include`/`extends`/`import`
    (prompts are self-contained; there is no template loader)."""
    where = where or {}
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where) from None
    for node in tree.find_all(_NO_LOADER_NODES):
        keyword = {"Include": "include", "Extends": "extends", "Import": "import", "FromImport": "from"}[
            type(node).__name__
        ]
        column = _column(source, node.lineno, keyword)
        raise PlatformError(
            f"Template error{_where_text(where)} at line {node.lineno}, column {column}: "
            f"'{{% {keyword} %}}' is not supported; a prompt is self-contained.",
            code="PROMPT_TEMPLATE_INVALID",
            details={**where, "line": node.lineno, "column": column, "error": f"{keyword} not supported"},
        )
    names = set(meta.find_undeclared_variables(tree)) - RESERVED_GLOBALS
    iterated: set[str] = set()
    for loop in tree.find_all(nodes.For):
        target = loop.iter
        if isinstance(target, nodes.Filter) and target.name == "_loop_guard":
            target = target.node
        if isinstance(target, nodes.Name):
            iterated.add(target.name)
    return {name: ("list" if name in iterated else "string") for name in sorted(names)}


def referenced_variables(source: str) -> set[str]:
    return set(inspect_template(source))


# --- variables -------------------------------------------------------------------------------------------------


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


# --- rendering ---------------------------------------------------------------------------------------------------

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
    token = _budget.set(budget)
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
            f"Rendering{_where_text(where)} stopped: {exc}.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": exc.limit, "line": _template_line(exc)},
        ) from None
    except SecurityError as exc:
        raise PlatformError(
            f"The template{_where_text(where)} tried to reach Python internals: {exc}",
            code="PROMPT_SANDBOX_VIOLATION",
            details={**where, "line": _template_line(exc)},
        ) from None
    except UndefinedError as exc:
        message = str(exc)
        match = _UNDEFINED_NAME.match(message)
        name = match.group(1) if match else None
        raise PlatformError(
            f"Variable '{name}' is missing{_where_text(where)}."
            if name
            else f"Undefined value{_where_text(where)}: {message}",
            code="PROMPT_VARIABLE_MISSING",
            field=name,
            details={**where, "variable": name, "line": _template_line(exc), "error": message},
        ) from None
    except RecursionError:
        raise PlatformError(
            f"Rendering{_where_text(where)} stopped: recursion too deep.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": "recursion"},
        ) from None
    except MemoryError:
        raise PlatformError(
            f"Rendering{_where_text(where)} stopped: out of memory.",
            code="PROMPT_RENDER_LIMIT",
            details={**where, "limit": "size"},
        ) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        line = _template_line(exc)
        raise PlatformError(
            f"The template failed{_where_text(where)}"
            + (f" at line {line}" if line else "")
            + f": {type(exc).__name__}: {exc}",
            code="PROMPT_TEMPLATE_INVALID",
            details={**where, "line": line, "error": f"{type(exc).__name__}: {exc}"},
        ) from None
    finally:
        _budget.reset(token)
