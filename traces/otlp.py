"""Optional export of written spans to an OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`), via opentelemetry-sdk.

Spans keep their ids (trace id, span id, parent), times and status; LLM fields follow the GenAI semantic
conventions (`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...). Inputs and outputs are not exported.
Export failures are logged by the exporter and never reach the caller.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from django.conf import settings

from traces.models import Span

logger = logging.getLogger("traces.otlp")
_exporter = None
_exporter_endpoint = None
_lock = threading.Lock()


def _get_exporter():
    global _exporter, _exporter_endpoint
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/")
    with _lock:
        if _exporter is None or _exporter_endpoint != endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"
            _exporter, _exporter_endpoint = OTLPSpanExporter(endpoint=url, timeout=5), endpoint
    return _exporter


def _attributes(span: Span) -> dict[str, Any]:
    attrs: dict[str, Any] = {"platform.span.kind": span.kind}
    for key, value in (span.attributes or {}).items():
        if isinstance(value, str | bool | int | float):
            attrs[f"platform.{key}"] = value
    if span.model:
        attrs.update(
            {
                "gen_ai.request.model": span.model,
                "gen_ai.system": span.provider,
                "gen_ai.usage.input_tokens": span.input_tokens,
                "gen_ai.usage.output_tokens": span.output_tokens,
                "platform.endpoint": span.endpoint,
            }
        )
        if span.cost is not None:
            attrs["platform.cost_usd"] = float(span.cost)
    if span.error_code:
        attrs["platform.error_code"] = span.error_code
    return attrs


def to_readable(span: Span):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    context = SpanContext(
        trace_id=int(span.trace_id, 16), span_id=int(span.span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
    )
    parent = (
        SpanContext(
            trace_id=int(span.trace_id, 16),
            span_id=int(span.parent_span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(1),
        )
        if span.parent_span_id
        else None
    )
    status = Status(StatusCode.OK) if span.status == "ok" else Status(StatusCode.ERROR, span.error_message[:200])
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=Resource.create({"service.name": "agent-platform"}),
        attributes=_attributes(span),
        status=status,
        start_time=int(span.start_time.timestamp() * 1e9),
        end_time=int(span.end_time.timestamp() * 1e9),
    )


_executor: ThreadPoolExecutor | None = None


def export_spans_in_background(spans: list[Span | dict[str, Any]]) -> Future | None:
    """Export on a background thread, so a slow collector never delays the request or task that flushed."""
    global _executor
    if not spans or not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return None
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-export")
    return _executor.submit(export_spans, spans)


def export_spans(spans: list[Span | dict[str, Any]]) -> bool:
    """Export written spans (model instances or the writer's rows)."""
    if not spans or not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return False
    try:
        from traces.services import SPAN_DEFAULTS

        readable = [to_readable(SimpleNamespace(**{**SPAN_DEFAULTS, **s}) if isinstance(s, dict) else s) for s in spans]
        result = _get_exporter().export(readable)
    except Exception:
        logger.exception("OTLP export of %d spans failed", len(spans))
        return False
    return getattr(result, "name", "") == "SUCCESS"
