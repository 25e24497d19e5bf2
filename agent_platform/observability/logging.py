"""Structured (JSON) logging with structlog: every line carries request_id, trace_id and span_id."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

from agent_platform.observability.context import current_request_id, current_trace


def add_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = current_request_id()
    if request_id:
        event_dict.setdefault("request_id", request_id)
    ctx = current_trace()
    if ctx is not None:
        event_dict.setdefault("trace_id", ctx.trace_id)
        if ctx.span_id:
            event_dict.setdefault("span_id", ctx.span_id)
    return event_dict


SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_context,
]


def make_formatter(fmt: str = "json") -> logging.Formatter:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        foreign_pre_chain=SHARED_PROCESSORS,
    )


structlog.configure(
    processors=[*SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
