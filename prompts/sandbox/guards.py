"""The helpers and filters templates may call, each checked against the render budget before it builds anything."""

from __future__ import annotations

import types
from collections.abc import Iterator
from functools import wraps
from typing import Any

from jinja2 import pass_context
from jinja2.filters import make_attrgetter
from jinja2.utils import _PassArg, generate_lorem_ipsum

from prompts.sandbox.limits import (
    SIZED,
    RenderLimitExceeded,
    active_limits,
    charge,
    check_time,
    current_budget,
    sized,
    too_big,
)
from prompts.sandbox.weight import check_format_string, heavy, weight


def guarded_range(*args: int) -> range:
    rng = range(*args)
    cap = active_limits().max_range
    if len(rng) > cap:
        raise RenderLimitExceeded(f"range() would produce {len(rng)} items, more than {cap}", limit="range")
    return rng


def small_lipsum(n: int = 5, html: bool = False, min: int = 20, max: int = 100) -> str:
    if n > 20 or max > 200:
        raise RenderLimitExceeded("lipsum() is limited to 20 paragraphs of at most 200 words", limit="size")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


@pass_context
def loop_guard(context: Any, iterable: Any) -> Iterator[Any]:
    """Wrapped around every `{% for %}` iterable by the AST rewrite below."""
    budget = current_budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.tick()
        yield item


@pass_context
def concat_guard(context: Any, parts: list[Any]) -> str:
    """Replaces `a ~ b ~ c`: the size is checked before the string is built."""
    too_big(sum(heavy(p, "concatenation (~)") for p in parts), "concatenation (~)")
    result = "".join([str(p) for p in parts])
    charge(result, "concatenation (~)")
    return result


@pass_context
def literal_guard(context: Any, value: Any) -> Any:
    """Wrapped around every list, tuple and dict literal: `[x, x, x]` must not weigh more than the cap."""
    check_time()
    heavy(value, "a list/dict literal")
    charge(value, "a list/dict literal")
    return value


def _metered(iterator: Iterator[Any], what: str) -> Iterator[Any]:
    """A lazy filter result (`|map`, `|batch`, `|slice`, ...): each item watches the deadline, built lists count."""
    budget = current_budget.get()
    for item in iterator:
        if budget is not None:
            budget.check_time()
            if isinstance(item, list):
                budget.charge(len(item) + 1, what)
        yield item


def finalize_output(context: Any, value: Any) -> Any:
    """Every `{{ expression }}`: refuse to print a value whose text would exceed the cap, before `str()` builds it;
    count what is printed against the render's running total (macros, `{% set %}` blocks, `caller()` and
    `{% filter %}` join what they print into one string, outside the output stream's own cap)."""
    budget = current_budget.get()
    if type(value) is not str:
        check_time()
        size = heavy(value, "printing a value")
    else:
        size = len(value)
    if budget is not None:
        budget.charge(size, "printed text")
    return value


@pass_context
def static_text(context: Any, text: str) -> str:
    """Long template text inside a loop or a buffered block: printed through `finalize_output`, so it is counted."""
    return text


finalize_output = pass_context(finalize_output)


STRING_METHOD_BOUND_TYPES = (types.BuiltinMethodType, types.MethodType)


def estimate_method(method: Any, args: tuple, kwargs: dict) -> int | None:
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
        tab: Any = "\t" if isinstance(s, str) else b"\t"
        return len(s) + s.count(tab) * max(tabsize, 0)
    if name == "replace" and len(values) >= 2 and isinstance(values[0], type(s)) and isinstance(values[1], type(s)):
        occurrences = len(s) + 1 if len(values[0]) == 0 else s.count(values[0])  # type: ignore[arg-type]  # same type as s
        if len(values) > 2 and isinstance(values[2], int) and values[2] >= 0:
            occurrences = min(occurrences, values[2])
        return len(s) + occurrences * len(values[1])
    if name == "join" and values:
        items = values[0]
        if not isinstance(items, (list, tuple)):
            return None
        return sum(heavy(x, f"{name}()") for x in items) + len(s) * max(len(items) - 1, 0)
    if name == "translate" and values and isinstance(values[0], dict):
        longest = max([1] + [heavy(v, "translate()") for v in values[0].values() if isinstance(v, str)])
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
        heavy(value, f"|{name}")
    values = rest + list(kwargs.values())
    if name == "center":
        width = values[0] if values else 80
        if isinstance(width, int):
            too_big(width, "|center")
    elif name == "indent" and isinstance(value, str):
        width = values[0] if values else 4
        width = len(width) if isinstance(width, str) else width
        if isinstance(width, int):
            too_big(len(value) + (value.count("\n") + 1) * max(width, 0), "|indent")
    elif name == "replace" and isinstance(value, str) and len(values) >= 2:
        old, new = str(values[0]), str(values[1])
        occurrences = len(value) + 1 if old == "" else value.count(old)
        too_big(len(value) + occurrences * len(new), "|replace")
    elif name == "join":
        if not isinstance(value, (list, tuple, str)):
            value = list(_metered(iter(value), "|join"))
            too_big(len(value), "|join")
        sep = values[0] if values else ""
        sep_len = heavy(sep, "|join") if sep is not None else 0
        if isinstance(value, str):
            too_big(len(value) + sep_len * max(len(value) - 1, 0), "|join")
        elif "attribute" not in kwargs and len(values) < 2:
            too_big(sum(heavy(x, "|join") for x in value) + sep_len * max(len(value) - 1, 0), "|join")
        else:
            too_big(sep_len * max(len(value) - 1, 0), "|join")
    elif name == "format" and isinstance(value, str):
        check_format_string(value, values, star="*" in value, what="|format")
    elif name == "wordwrap" and isinstance(value, str):
        wrapstring = values[2] if len(values) > 2 and isinstance(values[2], str) else "\n"
        width = values[0] if values and isinstance(values[0], int) and values[0] > 0 else 79
        too_big(len(value) + (len(value) // width + 1) * len(wrapstring), "|wordwrap")
    elif name == "tojson" and values:
        indent = values[0]
        if isinstance(indent, int) and indent > 0:
            too_big(weight(value) * (indent + 1), "|tojson indent")
    elif name == "batch":
        linecount = values[0] if values else 0
        fill_with = values[1] if len(values) > 1 else kwargs.get("fill_with")
        if isinstance(linecount, int) and fill_with is not None:
            too_big(linecount, "|batch")
    elif name == "slice":
        slices = values[0] if values else 0
        if isinstance(slices, int):
            too_big(slices, "|slice")
    elif name == "sum":
        attribute = rest[0] if rest else kwargs.get("attribute")
        start = rest[1] if len(rest) > 1 else kwargs.get("start", 0)
        if isinstance(start, SIZED):
            # sum() of sequences concatenates pairwise: every partial result is a new copy.
            items = value if isinstance(value, (list, tuple)) else list(_metered(iter(value), "|sum"))
            too_big(len(items), "|sum")
            from prompts.sandbox.environment import ENV  # the environment is built from these guards

            parts = items if attribute is None else [make_attrgetter(ENV, attribute)(item) for item in items]
            running, copied = len(start), 0
            for part in parts:
                running += sized(part) or 0
                copied += running
            too_big(running, "|sum")
            budget = current_budget.get()
            if budget is not None:
                budget.charge(copied, "|sum")
            value = items
    return value


def guard_filter(name: str, func: Any) -> Any:
    """Wrap a builtin filter: never folded at compile time (it takes the context), pre-checks the sizes the growing
    ones would build, post-checks every result and counts it against the render's running total."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    first = _PASS_ARG_FROM_CONTEXT.get(pass_arg.name) if pass_arg is not None else None

    @wraps(func)
    def guarded(context: Any, value: Any = None, *args: Any, **kwargs: Any) -> Any:
        check_time()
        value = _precheck_filter(name, value, list(args), kwargs)
        result = func(value, *args, **kwargs) if first is None else func(first(context), value, *args, **kwargs)
        if isinstance(result, types.GeneratorType):
            return _metered(result, f"|{name}")
        size = sized(result)
        if size is not None:
            too_big(size, f"|{name}")
            charge(result, f"|{name}")
        return result

    guarded.jinja_pass_arg = _PassArg.context  # type: ignore[attr-defined]
    return guarded
