"""How long str(value) is at least: what printing, joining or comparing a value costs, checked before it is built."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2.utils import Namespace

from prompts.sandbox.limits import MAX_INT_BITS, RenderLimitExceeded, active_limits, check_time, current_budget, too_big

_CONTAINERS = (list, tuple, dict, set, frozenset)
_DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
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
        value = value._Namespace__attrs
    elif isinstance(value, _DICT_VIEWS):
        value = value.mapping  # type: ignore[attr-defined]
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
    budget = current_budget.get()
    memo = budget.weights if budget is not None else {}
    limit = cap if cap is not None else active_limits().max_chars
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
            check_time()
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


def heavy(value: Any, what: str) -> int:
    """Refuse a value whose printed form would exceed the cap; return its weight."""
    cap = active_limits().max_chars
    w = weight(value, cap=cap)
    if w > cap:
        raise RenderLimitExceeded(f"{what} would print or copy a value of more than {cap} characters", limit="size")
    return w


_DIGITS = re.compile(r"\d+")
NESTED_FORMAT_FIELD = re.compile(r"\{[^{}]*\{")


def check_format_string(fmt: str, args: Iterable[Any], *, star: bool, what: str) -> None:
    """Widths/precisions written in a format string, or passed for `*` / nested `{}` fields, must stay under the
    cap, and so must the text of the values it formats."""
    for run in _DIGITS.findall(fmt):
        if len(run) > 12:
            too_big(10**12, what)
        too_big(int(run), what)
    args = list(args)
    if star:
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool):
                too_big(abs(arg), what)
    too_big(len(fmt) + sum(heavy(arg, what) for arg in args), what)


def check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise RenderLimitExceeded(f"{what} result would exceed {MAX_INT_BITS} bits", limit="size")
