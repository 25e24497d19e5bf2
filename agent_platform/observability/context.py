"""Request, trace and caller context, carried in contextvars.

- request id: set by `RequestIdMiddleware`, on every log line and every error envelope;
- trace context: a W3C-style trace id and the current span id, opened by the request middleware or by a run,
  carried into Celery tasks through headers (`inject_headers`/`extract_headers`) and into every log line;
- caller: who and what a piece of work is for (user, API key, team, agent, run, experiment, prompt version),
  so every LLM call and span can be attributed without passing these through every function.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


# --- traces -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex characters
    span_id: str | None = None  # 16 lowercase hex characters: the current (parent-to-be) span


_trace: ContextVar[TraceContext | None] = ContextVar("trace", default=None)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def new_call_id() -> str:
    """The id of one LLM call (all of its attempts and fallbacks)."""
    return "call_" + secrets.token_hex(12)


def current_trace() -> TraceContext | None:
    return _trace.get()


def set_trace(ctx: TraceContext | None):
    return _trace.set(ctx)


def reset_trace(token) -> None:
    _trace.reset(token)


@contextmanager
def use_trace(ctx: TraceContext | None) -> Iterator[TraceContext | None]:
    token = _trace.set(ctx)
    try:
        yield ctx
    finally:
        _trace.reset(token)


def parse_traceparent(value: str | None) -> TraceContext | None:
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match:
        return TraceContext(trace_id=match.group(1), span_id=match.group(2))
    if _TRACE_ID.match(value.strip().lower()):
        return TraceContext(trace_id=value.strip().lower())
    return None


def format_traceparent(ctx: TraceContext) -> str:
    return f"00-{ctx.trace_id}-{ctx.span_id or '0' * 16}-01"


# --- caller ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who and what the current work is for. Every field is optional; ids are plain values, not model objects."""

    user_id: int | None = None
    api_key_id: int | None = None
    team_id: int | None = None
    agent_id: int | None = None
    agent_slug: str | None = None
    run_id: str | None = None
    conversation_id: str | None = None
    experiment_id: int | None = None
    experiment_item_id: int | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    ab_variant: str | None = None
    session_id: str | None = None
    pii_mask: bool | None = None  # the agent's policy: what is stored for this work has PII masked

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


_caller: ContextVar[Caller] = ContextVar("caller", default=Caller())  # noqa: B039 - frozen


def current_caller() -> Caller:
    return _caller.get()


@contextmanager
def bind_caller(**values: Any) -> Iterator[Caller]:
    """Add to the current caller for the duration of the block (None values leave a field as it was)."""
    updated = replace(_caller.get(), **{k: v for k, v in values.items() if v is not None})
    token = _caller.set(updated)
    try:
        yield updated
    finally:
        _caller.reset(token)


def set_caller(caller: Caller):
    return _caller.set(caller)


def reset_caller(token) -> None:
    _caller.reset(token)


# --- propagation into Celery tasks --------------------------------------------------------------------------

HEADER_TRACEPARENT = "traceparent"
HEADER_REQUEST_ID = "x_request_id"
HEADER_CALLER = "x_caller"


def inject_headers() -> dict[str, Any]:
    """Headers that carry the current context into a task."""
    headers: dict[str, Any] = {}
    ctx = _trace.get()
    if ctx is not None:
        headers[HEADER_TRACEPARENT] = format_traceparent(ctx)
    request_id = _request_id.get()
    if request_id:
        headers[HEADER_REQUEST_ID] = request_id
    caller = _caller.get().as_dict()
    if caller:
        headers[HEADER_CALLER] = caller
    return headers


def extract_headers(headers: dict[str, Any] | None) -> tuple[TraceContext | None, str | None, Caller]:
    headers = headers or {}
    ctx = parse_traceparent(headers.get(HEADER_TRACEPARENT))
    if ctx is not None and ctx.span_id == "0" * 16:
        ctx = TraceContext(trace_id=ctx.trace_id)
    known = {f.name for f in fields(Caller)}
    raw_caller = headers.get(HEADER_CALLER) or {}
    caller = Caller(**{k: v for k, v in raw_caller.items() if k in known}) if isinstance(raw_caller, dict) else Caller()
    return ctx, headers.get(HEADER_REQUEST_ID), caller
