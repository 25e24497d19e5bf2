"""`start_span`: open a span in the current trace, emit it to the observers when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import (
    TraceContext,
    current_caller,
    new_span_id,
    new_trace_id,
    reset_trace,
    set_trace,
)
from agent_platform.observability.context import current_trace as _current_trace
from agent_platform.observability.hooks import SpanRecord, hub
from agent_platform.security.pii import mask_for_storage


@dataclass
class SpanHandle:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    name: str
    started_at: datetime
    input: Any = None
    output: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error_code: str | None = None
    error_message: str | None = None

    def set_output(self, output: Any) -> None:
        self.output = output

    def set_attributes(self, **attributes: Any) -> None:
        self.attributes.update(attributes)

    def set_error(self, *, code: str, message: str, status: str = "error") -> None:
        self.status, self.error_code, self.error_message = status, code, message


@contextmanager
def start_span(
    *, kind: str, name: str, input: Any = None, attributes: dict[str, Any] | None = None, trace_id: str | None = None
) -> Iterator[SpanHandle]:
    """A child of the current span (or the root of a new trace). Exceptions mark it failed and propagate."""
    parent = _current_trace()
    if parent is None or (trace_id and parent.trace_id != trace_id):
        parent = TraceContext(trace_id=trace_id or new_trace_id())
    handle = SpanHandle(
        trace_id=parent.trace_id,
        span_id=new_span_id(),
        parent_span_id=parent.span_id,
        kind=kind,
        name=name,
        started_at=datetime.now(UTC),
        input=input,
        attributes=dict(attributes or {}),
    )
    token = set_trace(TraceContext(trace_id=handle.trace_id, span_id=handle.span_id))
    try:
        yield handle
    except PlatformError as exc:
        if handle.status == "ok":
            handle.set_error(code=exc.code, message=exc.message)
        raise
    except BaseException as exc:
        if handle.status == "ok":
            cancelled = type(exc).__name__ in {"CancelledError", "KeyboardInterrupt"}
            handle.set_error(
                code="RUN_CANCELLED" if cancelled else "INTERNAL_ERROR",
                message=str(exc) or type(exc).__name__,
                status="cancelled" if cancelled else "error",
            )
        raise
    finally:
        reset_trace(token)
        caller = current_caller()
        if caller.pii_mask:  # work for an agent whose policy masks PII: the span is stored masked
            handle.input, handle.output = mask_for_storage(handle.input), mask_for_storage(handle.output)
            handle.error_message = mask_for_storage(handle.error_message)
        hub.emit_span(
            SpanRecord(
                trace_id=handle.trace_id,
                span_id=handle.span_id,
                parent_span_id=handle.parent_span_id,
                kind=handle.kind,
                name=handle.name,
                started_at=handle.started_at,
                ended_at=datetime.now(UTC),
                status=handle.status,
                error_code=handle.error_code,
                error_message=handle.error_message,
                input=handle.input,
                output=handle.output,
                attributes=handle.attributes,
                caller=caller,
            )
        )
