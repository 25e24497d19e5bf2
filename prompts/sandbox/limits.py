"""What one render may spend: the limits, the per-render budget and the checks that charge it."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jinja2 import TemplateSyntaxError

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
        max_chars=settings.PROMPT_RENDER_MAX_CHARS,
        timeout_s=settings.PROMPT_RENDER_TIMEOUT_MS / 1000.0,
        max_range=settings.PROMPT_RENDER_MAX_RANGE,
        max_iterations=settings.PROMPT_RENDER_MAX_ITERATIONS,
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


current_budget: ContextVar[RenderBudget | None] = ContextVar("prompt_render_budget", default=None)
compile_deadline: ContextVar[float | None] = ContextVar("prompt_compile_deadline", default=None)
_FALLBACK_LIMITS = RenderLimits()


def active_limits() -> RenderLimits:
    budget = current_budget.get()
    return budget.limits if budget is not None else _FALLBACK_LIMITS


def tick(n: int = 1) -> None:
    budget = current_budget.get()
    if budget is not None:
        budget.tick(n)


def check_time() -> None:
    budget = current_budget.get()
    if budget is not None:
        budget.check_time()


def charge(value: Any, what: str) -> None:
    budget = current_budget.get()
    size = sized(value)
    if budget is not None and size:
        budget.charge(size, what)


def too_big(size: int, what: str) -> None:
    cap = active_limits().max_chars
    if size > cap:
        raise RenderLimitExceeded(
            f"{what} would build {size} items/characters, more than the cap of {cap}", limit="size"
        )


SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


def sized(value: Any) -> int | None:
    return len(value) if isinstance(value, SIZED) else None
