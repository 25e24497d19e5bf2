"""Sandboxed Jinja2 rendering for prompts.

Templates run in an `ImmutableSandboxedEnvironment` with `StrictUndefined`, hardened further:

- **No Python internals**: the sandbox refuses `_`-prefixed and internal attributes (`__class__`, `__globals__`,
  `__subclasses__`, `_TemplateReference__context`, ...), through `.`/`[]`/`|attr` and through `str.format` fields;
  such an access raises `jinja2.sandbox.SecurityError` → `PROMPT_SANDBOX_VIOLATION`. Nothing from Django (settings,
  request) is ever put into the template context: only the prompt's declared variables.
- **Bounded output and time**: every loop's iterable is wrapped (by rewriting the parsed template) in a guard that
  counts iterations; every call (`environment.call`) counts too; the deadline is read on every tick and before every
  filter, operator and literal. `range()` refuses more than `MAX_RANGE` items.
- **Bounded building**: the sandbox caps what is *built*, not only what is printed. Every value a template makes
  (`*`, `+`, `%`, `~`, list/tuple/dict literals, `str.format`, the growing string methods, and the filters) is
  checked *before* it is built: no single string or container may weigh more than `max_chars`, where a value's
  weight is (a lower bound of) the length of its text through nested containers, so `[[1]*10000]*10000` is refused
  although each list is short; integers that `*`/`**` would make are capped at `MAX_INT_BITS`. One render may build
  at most `BUILT_FACTOR * max_chars` characters and container slots in total. Lazy filter results (`|map`,
  `|batch`, `|slice`, ...) watch the deadline per item. The output stream is cut off at `max_chars`. Any of these →
  `PROMPT_RENDER_LIMIT`.
- **Bounded compiling**: no constant folding (the optimizer is off, filters and the output finalizer take the
  context), so saving a prompt never runs its filters; compiling runs under the render timeout
  (`PROMPT_RENDER_LIMIT`, `stage: compile`); templates nested more than `MAX_NESTING` deep (blocks, brackets, unary
  operators, inline `if`s, counted on the tokens before the recursive parser sees them) or whose parsed tree is
  deeper than `MAX_TREE_DEPTH` are refused with `PROMPT_TEMPLATE_INVALID` (`limit: nesting`, the field named), and
  so are templates whose generated code exceeds `MAX_COMPILED_CODE` (`limit: complexity`): Python's `compile()`
  cannot be interrupted and holds the GIL.
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

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import TemplateAssertionError, TemplateError
from jinja2.filters import make_attrgetter
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, _PassArg, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from agent_platform.api.errors import PlatformError
from prompts import conf

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list", "object")
_CONTEXT_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})


# --- limits -------------------------------------------------------------------------------------------------

MAX_NESTING = 32  # blocks + brackets + unary operators open at once, counted on the tokens before parsing
MAX_TREE_DEPTH = 64  # depth of the parsed template (chains like `a+a+a…` or `x|f|f|f…` nest without brackets)
MAX_COMPILED_CODE = 400_000  # generated Python beyond the template's own text (~0.4 s of compile(), GIL held)
MAX_INT_BITS = 4096  # integers that `*` and `**` may produce (~1233 digits)
BUILT_FACTOR = 50  # one render may create at most this many times `max_chars` in strings and container slots


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int = 100_000  # rendered output, per text / per chat message; also the cap on any built value
    timeout_s: float = 1.0  # wall time for one render (and for compiling one template)
    max_range: int = 10_000  # items one range() may produce
    max_iterations: int = 200_000  # loop iterations + calls in one render

    @property
    def max_built(self) -> int:
        return self.max_chars * BUILT_FACTOR


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


class TemplateTooComplex(TemplateSyntaxError):
    """A template nested deeper than the compiler can take (it would recurse or overflow Python's own limits), or
    one whose generated code would take Python's `compile()` (which holds the GIL) too long."""

    def __init__(self, message: str, lineno: int, *, limit: str) -> None:
        super().__init__(message, lineno)
        self.limit = limit


class RenderBudget:
    """Time, iterations, output size and built size of one render; shared by all messages of a chat prompt."""

    __slots__ = ("built", "deadline", "limits", "size", "ticks", "weights")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.perf_counter() + limits.timeout_s
        self.ticks = 0
        self.size = 0
        self.built = 0
        self.weights: dict[int, tuple[Any, int]] = {}  # id → (the container, kept alive; its weight)

    def tick(self, n: int = 1) -> None:
        self.ticks += n
        if self.ticks > self.limits.max_iterations:
            raise RenderLimitExceeded(
                f"the template ran more than {self.limits.max_iterations} loop iterations and calls",
                limit="iterations",
            )
        if time.perf_counter() > self.deadline:
            self.timeout()

    def check_time(self) -> None:
        if time.perf_counter() > self.deadline:
            self.timeout()

    def timeout(self) -> None:
        raise RenderLimitExceeded(f"rendering took longer than {self.limits.timeout_s * 1000:.0f} ms", limit="time")

    def charge(self, size: int, what: str) -> None:
        """Count `size` characters / container slots just built against the render's running total."""
        self.built += size
        if self.built > self.limits.max_built:
            raise RenderLimitExceeded(
                f"{what}: the template built more than {self.limits.max_built} characters and items in total",
                limit="size",
            )
        if time.perf_counter() > self.deadline:
            self.timeout()


_budget: ContextVar[RenderBudget | None] = ContextVar("prompt_render_budget", default=None)
_compile_deadline: ContextVar[float | None] = ContextVar("prompt_compile_deadline", default=None)
_FALLBACK_LIMITS = RenderLimits()


def _limits() -> RenderLimits:
    budget = _budget.get()
    return budget.limits if budget is not None else _FALLBACK_LIMITS


def _tick(n: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick(n)


def _check_time() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.check_time()


def _charge(value: Any, what: str) -> None:
    budget = _budget.get()
    size = _sized(value)
    if budget is not None and size:
        budget.charge(size, what)


def _too_big(size: int, what: str) -> None:
    cap = _limits().max_chars
    if size > cap:
        raise RenderLimitExceeded(
            f"{what} would build {size} items/characters, more than the cap of {cap}", limit="size"
        )


_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, _SIZED) else None


# --- weight: how long str(value) is at least, i.e. what printing, joining or comparing it costs -------------------

_CONTAINERS = (list, tuple, dict, set, frozenset)
_DICT_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_MEMO_FROM = 64  # containers at least this heavy have their weight remembered for the rest of the render


def _int_digits(value: int) -> int:
    return (value.bit_length() * 1233 >> 12) + 1 + (value < 0)


def _leaf_weight(value: Any, nested: bool) -> int | None:
    """Weight of a value that holds no other values; None for containers."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) + (2 if nested else 0)  # quotes inside a container's repr
    if isinstance(value, bool) or value is None:
        return 4
    if isinstance(value, int):
        return _int_digits(value)
    if isinstance(value, float):
        return 3
    if isinstance(value, (*_CONTAINERS, *_DICT_VIEWS, Namespace)):
        return None
    return 1


def _children(value: Any) -> Iterable[Any]:
    if isinstance(value, Namespace):
        value = value._Namespace__attrs  # type: ignore[attr-defined]
    elif isinstance(value, _DICT_VIEWS):
        value = value.mapping  # type: ignore[union-attr]
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield item
    else:
        yield from value


def weight(value: Any, *, cap: int | None = None) -> int:
    """A lower bound of `len(str(value))` (so a value heavier than the output cap could never be printed anyway):
    the characters of its strings and numbers plus brackets, quotes and separators, counted through nested
    containers. Counting stops just past `cap`; containers' weights are remembered for the render (they cannot
    change: the sandbox is immutable; namespaces, which can, are always counted afresh)."""
    leaf = _leaf_weight(value, False)
    if leaf is not None:
        return leaf
    budget = _budget.get()
    memo = budget.weights if budget is not None else {}
    limit = cap if cap is not None else _limits().max_chars
    known = memo.get(id(value))
    if known is not None:
        return known[1]
    # Iterative post-order walk (inputs and built values may nest deeper than Python's recursion limit).
    running = 2  # everything counted so far, for stopping early
    frames: list[tuple[Any, Iterator[Any]]] = [(value, iter(_children(value)))]
    totals: list[int] = [2]  # each open container's own weight so far (its brackets to begin with)
    while frames:
        container, children = frames[-1]
        child = next(children, _END)
        if child is _END:
            frames.pop()
            own = totals.pop()
            if own >= _MEMO_FROM and not isinstance(container, Namespace):
                memo[id(container)] = (container, own)
            if not totals:
                return own
            totals[-1] += own
            continue
        if not running & 0xFFF:
            _check_time()
        leaf = _leaf_weight(child, True)
        if leaf is None:
            known = memo.get(id(child))
            if known is None:
                if len(frames) > 10_000:
                    return limit + 1  # nested deeper than repr() could print
                frames.append((child, iter(_children(child))))
                totals.append(4)  # brackets and separator
                running += 4
                continue
            leaf = known[1]
        totals[-1] += leaf + 2  # the item and its separator
        running += leaf + 2
        if running > limit:
            return limit + 1
    return totals[0] if totals else 0


_END = object()


def _heavy(value: Any, what: str) -> int:
    """Refuse a value whose printed form would exceed the cap; return its weight."""
    cap = _limits().max_chars
    w = weight(value, cap=cap)
    if w > cap:
        raise RenderLimitExceeded(f"{what} would print or copy a value of more than {cap} characters", limit="size")
    return w


_DIGITS = re.compile(r"\d+")
_NESTED_FORMAT_FIELD = re.compile(r"\{[^{}]*\{")


def _check_format_string(fmt: str, args: Iterable[Any], *, star: bool, what: str) -> None:
    """Widths/precisions written in a format string, or passed for `*` / nested `{}` fields, must stay under the
    cap, and so must the text of the values it formats."""
    for run in _DIGITS.findall(fmt):
        if len(run) > 12:
            _too_big(10**12, what)
        _too_big(int(run), what)
    args = list(args)
    if star:
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool):
                _too_big(abs(arg), what)
    _too_big(len(fmt) + sum(_heavy(arg, what) for arg in args), what)


def _check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise RenderLimitExceeded(f"{what} result would exceed {MAX_INT_BITS} bits", limit="size")


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


@pass_context
def _loop_guard(context: Any, iterable: Any) -> Iterator[Any]:
    """Wrapped around every `{% for %}` iterable by the AST rewrite below."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.tick()
        yield item


@pass_context
def _concat_guard(context: Any, parts: list[Any]) -> str:
    """Replaces `a ~ b ~ c`: the size is checked before the string is built."""
    _too_big(sum(_heavy(p, "concatenation (~)") for p in parts), "concatenation (~)")
    result = "".join([str(p) for p in parts])
    _charge(result, "concatenation (~)")
    return result


@pass_context
def _literal_guard(context: Any, value: Any) -> Any:
    """Wrapped around every list, tuple and dict literal: `[x, x, x]` must not weigh more than the cap."""
    _check_time()
    _heavy(value, "a list/dict literal")
    _charge(value, "a list/dict literal")
    return value


def _metered(iterator: Iterator[Any], what: str) -> Iterator[Any]:
    """A lazy filter result (`|map`, `|batch`, `|slice`, ...): each item watches the deadline, built lists count."""
    budget = _budget.get()
    for item in iterator:
        if budget is not None:
            budget.check_time()
            if isinstance(item, list):
                budget.charge(len(item) + 1, what)
        yield item


def _finalize_output(context: Any, value: Any) -> Any:
    """Every `{{ expression }}`: refuse to print a value whose text would exceed the cap, before `str()` builds it;
    count what is printed against the render's running total (macros, `{% set %}` blocks, `caller()` and
    `{% filter %}` join what they print into one string, outside the output stream's own cap)."""
    budget = _budget.get()
    if type(value) is not str:
        _check_time()
        size = _heavy(value, "printing a value")
    else:
        size = len(value)
    if budget is not None:
        budget.charge(size, "printed text")
    return value


@pass_context
def _static_text(context: Any, text: str) -> str:
    """Long template text inside a loop or a buffered block: printed through `_finalize_output`, so it is counted."""
    return text


_finalize_output = pass_context(_finalize_output)


_STRING_METHOD_BOUND_TYPES = (types.BuiltinMethodType, types.MethodType)


def _estimate_method(method: Any, args: tuple, kwargs: dict) -> int | None:
    """Upper bound of the length a growing `str`/`bytes`/`int` method would return, or None if it cannot grow."""
    s = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    values = list(args) + list(kwargs.values())
    if isinstance(s, int) and not isinstance(s, bool) and name == "to_bytes":
        length = values[0] if values else 1
        return length if isinstance(length, int) else None
    if not isinstance(s, (str, bytes, bytearray)):
        return None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max([len(s)] + [v for v in values[:1] if isinstance(v, int)])
    if name == "expandtabs":
        tabsize = values[0] if values and isinstance(values[0], int) else 8
        return len(s) + s.count("\t" if isinstance(s, str) else b"\t") * max(tabsize, 0)
    if name == "replace" and len(values) >= 2 and isinstance(values[0], type(s)) and isinstance(values[1], type(s)):
        occurrences = len(s) + 1 if len(values[0]) == 0 else s.count(values[0])
        if len(values) > 2 and isinstance(values[2], int) and values[2] >= 0:
            occurrences = min(occurrences, values[2])
        return len(s) + occurrences * len(values[1])
    if name == "join" and values:
        items = values[0]
        if not isinstance(items, (list, tuple)):
            return None
        return sum(_heavy(x, f"{name}()") for x in items) + len(s) * max(len(items) - 1, 0)
    if name == "translate" and values and isinstance(values[0], dict):
        longest = max([1] + [_heavy(v, "translate()") for v in values[0].values() if isinstance(v, str)])
        return len(s) * longest
    if name == "encode":
        return len(s) * 4
    return None


# --- filters wrapped with size checks --------------------------------------------------------------------------

# Filters that turn their input into text (`str(value)` of a nested list costs as much as printing it).
_STRINGIFYING = frozenset(
    {
        "capitalize", "center", "e", "escape", "filesizeformat", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
        "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
_PASS_ARG_FROM_CONTEXT = {
    "context": lambda context: context,
    "eval_context": lambda context: context.eval_ctx,
    "environment": lambda context: context.environment,
}


def _precheck_filter(name: str, value: Any, rest: list[Any], kwargs: dict[str, Any]) -> Any:
    """Refuse what a filter would build beyond the caps, before it builds it. Returns the (possibly materialized)
    value to filter."""
    if name in _STRINGIFYING:
        _heavy(value, f"|{name}")
    values = rest + list(kwargs.values())
    if name == "center":
        width = values[0] if values else 80
        if isinstance(width, int):
            _too_big(width, "|center")
    elif name == "indent" and isinstance(value, str):
        width = values[0] if values else 4
        width = len(width) if isinstance(width, str) else width
        if isinstance(width, int):
            _too_big(len(value) + (value.count("\n") + 1) * max(width, 0), "|indent")
    elif name == "replace" and isinstance(value, str) and len(values) >= 2:
        old, new = str(values[0]), str(values[1])
        occurrences = len(value) + 1 if old == "" else value.count(old)
        _too_big(len(value) + occurrences * len(new), "|replace")
    elif name == "join":
        if not isinstance(value, (list, tuple, str)):
            value = list(_metered(iter(value), "|join"))
            _too_big(len(value), "|join")
        sep = values[0] if values else ""
        sep_len = _heavy(sep, "|join") if sep is not None else 0
        if isinstance(value, str):
            _too_big(len(value) + sep_len * max(len(value) - 1, 0), "|join")
        elif "attribute" not in kwargs and len(values) < 2:
            _too_big(sum(_heavy(x, "|join") for x in value) + sep_len * max(len(value) - 1, 0), "|join")
        else:
            _too_big(sep_len * max(len(value) - 1, 0), "|join")
    elif name == "format" and isinstance(value, str):
        _check_format_string(value, values, star="*" in value, what="|format")
    elif name == "wordwrap" and isinstance(value, str):
        wrapstring = values[2] if len(values) > 2 and isinstance(values[2], str) else "\n"
        width = values[0] if values and isinstance(values[0], int) and values[0] > 0 else 79
        _too_big(len(value) + (len(value) // width + 1) * len(wrapstring), "|wordwrap")
    elif name == "tojson" and values:
        indent = values[0]
        if isinstance(indent, int) and indent > 0:
            _too_big(weight(value) * (indent + 1), "|tojson indent")
    elif name == "batch":
        linecount = values[0] if values else 0
        fill_with = values[1] if len(values) > 1 else kwargs.get("fill_with")
        if isinstance(linecount, int) and fill_with is not None:
            _too_big(linecount, "|batch")
    elif name == "slice":
        slices = values[0] if values else 0
        if isinstance(slices, int):
            _too_big(slices, "|slice")
    elif name == "sum":
        attribute = rest[0] if rest else kwargs.get("attribute")
        start = rest[1] if len(rest) > 1 else kwargs.get("start", 0)
        if isinstance(start, _SIZED):
            # sum() of sequences concatenates pairwise: every partial result is a new copy.
            items = value if isinstance(value, (list, tuple)) else list(_metered(iter(value), "|sum"))
            _too_big(len(items), "|sum")
            parts = items if attribute is None else [make_attrgetter(ENV, attribute)(item) for item in items]
            running, copied = len(start), 0
            for part in parts:
                running += _sized(part) or 0
                copied += running
            _too_big(running, "|sum")
            budget = _budget.get()
            if budget is not None:
                budget.charge(copied, "|sum")
            value = items
    return value


def _guard_filter(name: str, func: Any) -> Any:
    """Wrap a builtin filter: never folded at compile time (it takes the context), pre-checks the sizes the growing
    ones would build, post-checks every result and counts it against the render's running total."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    first = _PASS_ARG_FROM_CONTEXT.get(pass_arg.name) if pass_arg is not None else None

    @wraps(func)
    def guarded(context: Any, value: Any = None, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        value = _precheck_filter(name, value, list(args), kwargs)
        result = func(value, *args, **kwargs) if first is None else func(first(context), value, *args, **kwargs)
        if isinstance(result, types.GeneratorType):
            return _metered(result, f"|{name}")
        size = _sized(result)
        if size is not None:
            _too_big(size, f"|{name}")
            _charge(result, f"|{name}")
        return result

    guarded.jinja_pass_arg = _PassArg.context  # type: ignore[attr-defined]
    return guarded


# --- the environment ------------------------------------------------------------------------------------------


class _LocatingParser(Parser):
    """Remembers the token the parser failed on, so syntax errors can carry a column; watches the compile deadline."""

    def fail(self, msg: str, lineno: int | None = None, exc: type[TemplateSyntaxError] = TemplateSyntaxError):
        try:
            super().fail(msg, lineno, exc)
        except TemplateSyntaxError as error:
            current = self.stream.current
            error.failed_token = (current.lineno, current.type, current.value)  # type: ignore[attr-defined]
            raise

    def parse_statement(self) -> Any:
        _check_compile_deadline()
        return super().parse_statement()

    def parse_primary(self, *args: Any, **kwargs: Any) -> nodes.Expr:
        _check_compile_deadline()
        return super().parse_primary(*args, **kwargs)


def _check_compile_deadline() -> None:
    deadline = _compile_deadline.get()
    if deadline is not None and time.perf_counter() > deadline:
        raise RenderLimitExceeded("compiling the template took too long", limit="time")


class _DeadlineCodeGenerator(CodeGenerator):
    """Jinja's code generator, watching the compile deadline on every node it writes."""

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        _check_compile_deadline()
        return super().visit(node, *args, **kwargs)


_BLOCK_TAGS = frozenset({"for", "if", "macro", "call", "filter", "with", "autoescape", "block", "raw", "trans"})
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")
_UNARY = frozenset({"-", "+"})


def _check_nesting(environment: Any, source: str) -> None:
    """Refuse templates that nest blocks, brackets, unary operators or inline `if`s more than MAX_NESTING deep,
    counted on the tokens (the parser recurses on each of these, so the parsed tree cannot be asked)."""
    depth = blocks = expression_ifs = unary_run = 0
    after_block_begin = pending_set = False
    for count, (lineno, kind, value) in enumerate(environment.lexer.tokeniter(source, None)):
        if not count & 0xFF:
            _check_compile_deadline()
        if kind == "whitespace":
            continue
        if kind == "block_begin":
            after_block_begin, expression_ifs = True, 0
            continue
        if kind in ("block_end", "variable_end"):
            if pending_set:
                blocks += 1
            pending_set, expression_ifs, unary_run = False, 0, 0
            continue
        if after_block_begin and kind == "name":
            after_block_begin = False
            if value in _BLOCK_TAGS:
                blocks += 1
            elif value == "set":
                pending_set = True
            elif value.startswith("end"):
                blocks = max(blocks - 1, 0)
            continue
        after_block_begin = False
        if kind == "operator":
            if value in _OPENERS:
                depth += 1
            elif value in _CLOSERS:
                depth = max(depth - 1, 0)
            elif value == "=" and pending_set:
                pending_set = False
            unary_run = unary_run + 1 if value in _UNARY else 0
        elif kind == "name" and value == "not":
            unary_run += 1
        elif kind == "name" and value == "if":
            expression_ifs += 1
            unary_run = 0
        else:
            unary_run = 0
        if depth + blocks + expression_ifs + unary_run > MAX_NESTING:
            raise TemplateTooComplex(
                f"the template nests blocks, brackets and operators more than {MAX_NESTING} deep",
                lineno,
                limit="nesting",
            )


def _check_tree_depth(tree: nodes.Node) -> None:
    stack: list[tuple[nodes.Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise TemplateTooComplex(
                f"the template's expressions nest more than {MAX_TREE_DEPTH} deep",
                getattr(node, "lineno", 1) or 1,
                limit="nesting",
            )
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


# Blocks whose text may repeat or is collected into one string before it reaches the output stream.
_BUFFERED = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)
_COUNTED_TEXT_FROM = 64  # shorter text: at most 200,000 iterations x 63 characters


class _LiteralGuards(NodeTransformer):
    """Wraps list, tuple and dict literals (not assignment targets) in `_literal_guard`."""

    def _guard(self, node: nodes.Expr) -> nodes.Expr:
        self.generic_visit(node)
        guarded = nodes.Filter(node, "_literal_guard", [], [], None, None)
        guarded.set_lineno(node.lineno)
        return guarded

    def visit_List(self, node: nodes.List) -> nodes.Expr:
        return self._guard(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Expr:
        return self._guard(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        if node.ctx != "load":
            self.generic_visit(node)
            return node
        return self._guard(node)


class PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _DeadlineCodeGenerator

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
            # No constant folding: the optimizer would run filters on literals at compile time, with no deadline.
            optimized=False,
            # Takes the context, so the code generator never evaluates outputs at compile time either.
            finalize=_finalize_output,
        )
        self.globals["range"] = _guarded_range
        self.globals["lipsum"] = _small_lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_loop_guard"] = _loop_guard
        self.filters["_concat_guard"] = _concat_guard
        self.filters["_literal_guard"] = _literal_guard
        self.filters["_static_text"] = _static_text

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            _check_nesting(self, source)
        except TemplateTooComplex:
            raise
        except TemplateSyntaxError:
            pass  # a lexing error: the parser reports it with its location
        tree = _LocatingParser(self, source, name, filename).parse()
        _check_tree_depth(tree)
        tree = _LiteralGuards().visit(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_loop_guard", [], [], None, None, lineno=loop.lineno)
        for output in [output for body in tree.find_all(_BUFFERED) for output in body.find_all(nodes.Output)]:
            output.nodes = [
                nodes.Filter(nodes.Const(child.data), "_static_text", [], [], None, None, lineno=child.lineno)
                if isinstance(child, nodes.TemplateData) and len(child.data) >= _COUNTED_TEXT_FROM
                else child
                for child in output.nodes
            ]
        for concat in tree.find_all(nodes.Concat):
            guarded = nodes.Filter(nodes.List(concat.nodes, lineno=concat.lineno), "_concat_guard", [], [], None, None)
            guarded.set_lineno(concat.lineno)
            concat.nodes = [guarded]
        return tree

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False):
        code = super()._generate(source, name, filename, defer_init=defer_init)
        text = sum(len(node.data) for node in source.find_all(nodes.TemplateData))
        text += sum(len(node.value) for node in source.find_all(nodes.Const) if isinstance(node.value, str))
        if len(code) - text > MAX_COMPILED_CODE:
            raise TemplateTooComplex(
                "the template has too many expressions and blocks to compile at once; split it into several prompts",
                1,
                limit="complexity",
            )
        _check_compile_deadline()
        return code

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        result_size: int | None = None
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(n, int):
                    times = max(n, 0)
                    _too_big(size * times, "repetition (*)")
                    _too_big(_heavy(seq, "repetition (*)") * times, "repetition (*)")
                    result_size = size * times
            if isinstance(left, int) and isinstance(right, int):
                _check_int_bits(left.bit_length() + right.bit_length(), "multiplication (*)")
        elif operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            if big:
                _check_int_bits(left.bit_length() * right if right < 1 << 20 else MAX_INT_BITS + 1, "power (**)")
            if isinstance(left, float) or isinstance(right, float):
                try:
                    return math.pow(left, right)
                except (OverflowError, ValueError) as exc:
                    raise RenderLimitExceeded(f"power (**) failed: {exc}", limit="size") from None
        elif operator == "+":
            a, b = _sized(left), _sized(right)
            if a is not None and b is not None:
                _too_big(a + b, "addition (+)")
                _too_big(_heavy(left, "addition (+)") + _heavy(right, "addition (+)"), "addition (+)")
                result_size = a + b
        elif operator == "%" and isinstance(left, str):
            if isinstance(right, tuple):
                args: tuple = right
            elif isinstance(right, dict):
                args = tuple(right.values())
            else:
                args = (right,)
            _check_format_string(left, args, star="*" in left, what="formatting (%)")
        budget = _budget.get()
        if budget is not None and result_size:
            budget.charge(result_size, f"operator {operator}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if isinstance(__obj, _STRING_METHOD_BOUND_TYPES):
            estimate = _estimate_method(__obj, args, kwargs)
            if estimate is not None:
                _too_big(estimate, f"{getattr(__obj, '__name__', 'method')}()")
        result = ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        size = _sized(result)
        if size is not None:
            _too_big(size, "a call")
            if isinstance(result, dict):  # dict(a=x, b=x, ...), dict.fromkeys(keys, x): one value many times
                _heavy(result, "a call")
            _charge(result, "a call")
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
            _charge(result, "str.format")
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
    location = _where_text(where)
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
            f"Compiling the template{_where_text(where)} stopped: it took longer than "
            f"{default_limits().timeout_s * 1000:.0f} ms.",
            code="PROMPT_RENDER_LIMIT",
            field=_field(where),
            details={**where, "limit": "time", "stage": "compile"},
        )
    return PlatformError(
        f"The template{_where_text(where)} is nested too deeply to compile ({type(exc).__name__}).",
        code="PROMPT_TEMPLATE_INVALID",
        field=_field(where),
        details={**where, "limit": "nesting", "error": f"{type(exc).__name__}: {exc}"},
    )


def _where_text(where: dict[str, Any]) -> str:
    if "message_index" in where:
        return f" in messages[{where['message_index']}]"
    return ""


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> Template:
    return ENV.from_string(source)


_COMPILE_FAILURES = (RenderLimitExceeded, RecursionError, SyntaxError, MemoryError)


def _compile_timeout() -> float:
    budget = _budget.get()
    return budget.deadline if budget is not None else time.perf_counter() + default_limits().timeout_s


def compile_template(source: str, *, where: dict[str, Any] | None = None) -> Template:
    """The compiled template for `source` (cached); `PROMPT_TEMPLATE_INVALID` with line and column if it fails,
    or if it nests too deeply; `PROMPT_RENDER_LIMIT` if compiling takes longer than the render timeout."""
    token = _compile_deadline.set(_compile_timeout())
    try:
        return _compile_cached(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where or {}) from None
    except _COMPILE_FAILURES as exc:
        raise _compile_failure(exc, where or {}) from None
    finally:
        _compile_deadline.reset(token)


_NO_LOADER_NODES = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)


def inspect_template(source: str, *, where: dict[str, Any] | None = None) -> dict[str, str]:
    """The variables a template reads from its context (minus the sandbox's own globals), each with a guessed
    type: `list` for a variable a `{% for %}` iterates over, else `string`. Refuses `include`/`extends`/`import`
    (prompts are self-contained; there is no template loader)."""
    where = where or {}
    token = _compile_deadline.set(_compile_timeout())
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(error, source, where) from None
    except _COMPILE_FAILURES as exc:
        raise _compile_failure(exc, where) from None
    finally:
        _compile_deadline.reset(token)
    for node in tree.find_all(_NO_LOADER_NODES):
        keyword = {"Include": "include", "Extends": "extends", "Import": "import", "FromImport": "from"}[
            type(node).__name__
        ]
        column = _column(source, node.lineno, keyword)
        raise PlatformError(
            f"Template error{_where_text(where)} at line {node.lineno}, column {column}: "
            f"'{{% {keyword} %}}' is not supported; a prompt is self-contained.",
            code="PROMPT_TEMPLATE_INVALID",
            field=_field(where),
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
