"""Writes of the traces app: span batches (with trace upserts), ingestion, retention."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from agent_platform.observability.hooks import LLMCallRecord, SpanKind, SpanRecord, hub
from traces.models import Span, Trace

logger = logging.getLogger("traces")
MAX_JSON_CHARS = 256_000
TRACE_META_FIELDS = ("name", "user_id", "api_key_id", "session_id", "tags", "agent_id", "agent_slug", "run_id")


def json_text(value: Any) -> str | None:
    """`value` as JSON text (unknown objects become strings; very large values are cut to a preview)."""
    if value is None:
        return None
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = json.dumps(str(value), ensure_ascii=False)
    if len(text) > MAX_JSON_CHARS:
        text = json.dumps({"truncated": True, "size": len(text), "preview": text[:10_000]})
    return text


def _duration_ms(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds() * 1000.0, 0.0)


# A span travels from the hot path to the writer as a plain dict of column values ("row"), cheaper to build than
# a model instance; private keys: "_meta" (trace attribution from the caller), "_billed" (an LLM span to price) and
# "_cache_write_tokens" (priced at their own rate; no column).
SPAN_COLUMNS = [f for f in Span._meta.concrete_fields if not f.primary_key]
SPAN_DEFAULTS = {f.attname: f.get_default() for f in SPAN_COLUMNS}
_JSON_SLOTS = {"attributes": 0, "input": 1, "output": 2}
_COPY_SPECS = [(f.attname, _JSON_SLOTS.get(f.attname)) for f in SPAN_COLUMNS]
_SPAN_NAMES = {f.attname for f in SPAN_COLUMNS}


def span_row_from_record(record: SpanRecord) -> dict[str, Any]:
    caller = record.caller
    return {
        "span_id": record.span_id,
        "trace_id": record.trace_id,
        "parent_span_id": record.parent_span_id,
        "kind": record.kind if record.kind in SpanKind.CHOICES else SpanKind.CUSTOM,
        "name": (record.name or record.kind)[:200],
        "start_time": record.started_at,
        "end_time": record.ended_at,
        "duration_ms": _duration_ms(record.started_at, record.ended_at),
        "status": record.status,
        "error_code": record.error_code or "",
        "error_message": record.error_message or "",
        "attributes": record.attributes,
        "input": record.input,
        "output": record.output,
        "user_id": caller.user_id,
        "agent_id": caller.agent_id,
        "run_id": caller.run_id or "",
        "prompt_name": caller.prompt_name or "",
        "prompt_version": caller.prompt_version,
        "_meta": _meta_from_caller(caller),
    }


def span_row_from_llm_call(record: LLMCallRecord, *, cost: Decimal | None = None, billed: bool = False) -> dict:
    caller = record.caller
    output: dict[str, Any] = {"content": record.output}
    if record.tool_calls:
        output["tool_calls"] = record.tool_calls
    if record.finish_reason:
        output["finish_reason"] = record.finish_reason
    attributes = {
        "call_id": record.call_id,
        "attempt_id": record.attempt_id,
        "attempt": record.attempt,
        "is_fallback": record.is_fallback,
        "cache_hit": record.cache_hit,
        "stream": record.stream,
        "parameters": _without_secrets(record.parameters),
    }
    if caller.experiment_id:
        attributes["experiment_id"] = caller.experiment_id
    if caller.ab_variant:
        attributes["ab_variant"] = caller.ab_variant
    return {
        "span_id": record.span_id,
        "trace_id": record.trace_id,
        "parent_span_id": record.parent_span_id,
        "kind": SpanKind.LLM,
        "name": f"llm {record.endpoint or record.model}"[:200],
        "start_time": record.started_at,
        "end_time": record.ended_at,
        "duration_ms": record.latency_ms or _duration_ms(record.started_at, record.ended_at),
        "status": record.status,
        "error_code": record.error_code or "",
        "error_message": record.error_message or "",
        "attributes": attributes,
        "input": record.messages,
        "output": output,
        "user_id": caller.user_id,
        "agent_id": caller.agent_id,
        "run_id": caller.run_id or "",
        "model": record.model or "",
        "endpoint": record.endpoint or "",
        "provider": record.provider or "",
        "prompt_name": caller.prompt_name or "",
        "prompt_version": caller.prompt_version,
        "input_tokens": max(record.input_tokens, 0),
        "output_tokens": max(record.output_tokens, 0),
        "cached_tokens": max(record.cached_tokens, 0),
        "reasoning_tokens": max(record.reasoning_tokens, 0),
        "cost": cost,
        "time_to_first_token_ms": record.time_to_first_token_ms,
        "_meta": _meta_from_caller(caller),
        "_billed": billed,
        "_cache_write_tokens": max(record.cache_write_tokens, 0),
    }


_SECRET_NAME = re.compile(r"(api[_-]?key|authorization|secret|password|token$|credential)", re.IGNORECASE)


def _without_secrets(parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Call parameters as stored on a span: anything named like a credential is dropped."""
    return {k: v for k, v in (parameters or {}).items() if not _SECRET_NAME.search(str(k))}


def span_row_from_instance(span: Span, *, meta: dict[str, Any] | None = None, billed: bool = False) -> dict[str, Any]:
    """A span built as a model instance, as a row: `meta` attributes its trace, `billed` marks an LLM span to price."""
    row = {name: getattr(span, name) for name in _SPAN_NAMES}
    row["_meta"] = meta or {}
    row["_billed"] = billed
    return row


def _meta_from_caller(caller) -> dict[str, Any]:
    meta = {
        "user_id": caller.user_id,
        "api_key_id": caller.api_key_id,
        "agent_id": caller.agent_id,
        "agent_slug": caller.agent_slug or "",
        "run_id": caller.run_id or "",
        "session_id": caller.session_id or caller.conversation_id or "",
    }
    return {k: v for k, v in meta.items() if v not in (None, "")}


def _price_unpriced_llm_rows(rows: Iterable[dict[str, Any]]) -> None:
    # priced through the hub (the costs app registers the pricer): traces does not depend on costs
    for row in rows:
        if not row.get("_billed") or row.get("cost") is not None or row.get("kind") != SpanKind.LLM:
            continue
        row["cost"] = hub.pricer(
            provider=row.get("provider", ""),
            model=row.get("model", ""),
            at=row["start_time"],
            input_tokens=row.get("input_tokens", 0),
            output_tokens=row.get("output_tokens", 0),
            cached_tokens=row.get("cached_tokens", 0),
            reasoning_tokens=row.get("reasoning_tokens", 0),
            cache_write_tokens=row.get("_cache_write_tokens", 0),
            failed=row.get("status", "ok") != "ok",  # priced as the cost record is: what the vendor bills
        )


def spans_write(
    *,
    spans: list[Span | dict[str, Any]],
    trace_meta: dict[str, dict[str, Any]] | None = None,
    source: str = "platform",
) -> int:
    """Insert a batch of spans (model instances or rows; a span id already stored is skipped: idempotent) and
    upsert their traces with totals re-aggregated from all of their spans. Returns the number of spans given."""
    rows = [s if isinstance(s, dict) else span_row_from_instance(s) for s in spans]
    trace_meta = {k: dict(v) for k, v in (trace_meta or {}).items()}
    use_copy = connection.vendor == "postgresql" and len(rows) >= 100
    for row in rows:
        row["_json"] = (
            json_text(row.get("attributes") or {}),
            json_text(row.get("input")),
            json_text(row.get("output")),
        )
        meta = row.get("_meta")
        if meta:
            target = trace_meta.setdefault(row["trace_id"], {})
            for key, value in meta.items():
                target.setdefault(key, value)
    _price_unpriced_llm_rows(rows)
    with transaction.atomic():
        if rows:
            if use_copy:
                _copy_spans(rows)
            else:
                Span.objects.bulk_create([span_instance(row) for row in rows], batch_size=1000, ignore_conflicts=True)
        trace_ids = sorted({row["trace_id"] for row in rows} | set(trace_meta))
        for i in range(0, len(trace_ids), 500):
            chunk = trace_ids[i : i + 500]
            traces_refresh(trace_ids=chunk, trace_meta={t: trace_meta.get(t, {}) for t in chunk}, source=source)
    return len(rows)


def span_instance(row: dict[str, Any]) -> Span:
    """An unsaved `Span` from a row (JSON values made JSON-safe)."""
    values = {k: v for k, v in row.items() if k in _SPAN_NAMES}
    texts = row.get("_json") or (
        json_text(row.get("attributes") or {}),
        json_text(row.get("input")),
        json_text(row.get("output")),
    )
    attributes, input_, output = (None if t is None else json.loads(t) for t in texts)
    values.update(attributes=attributes or {}, input=input_, output=output)
    return Span(**values)


def _copy_spans(rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the batch into a temporary table, then insert it skipping span ids already stored."""
    column_list = ", ".join(f.column for f in SPAN_COLUMNS)
    defaults = SPAN_DEFAULTS
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS traces_span_load ON COMMIT DELETE ROWS AS "  # noqa: S608
            f"SELECT {column_list} FROM traces_span WITH NO DATA"
        )
        raw = cursor.cursor  # the psycopg cursor
        with raw.copy(f"COPY traces_span_load ({column_list}) FROM STDIN") as copy:
            for row in rows:
                texts = row["_json"]
                copy.write_row(
                    [row.get(name, defaults[name]) if slot is None else texts[slot] for name, slot in _COPY_SPECS]
                )
        cursor.execute(
            f"INSERT INTO traces_span ({column_list}) SELECT DISTINCT ON (span_id) {column_list} "  # noqa: S608
            "FROM traces_span_load ON CONFLICT (span_id) DO NOTHING"
        )
        cursor.execute("DELETE FROM traces_span_load")


def traces_refresh(*, trace_ids: list[str], trace_meta: dict[str, dict[str, Any]], source: str = "platform") -> None:
    """Upsert the trace rows of `trace_ids`: totals from all their spans, name and status from the root span,
    attribution (user, agent, session, tags) from the first batch that knew it."""
    if not trace_ids:
        return
    now = timezone.now()
    # Make sure every trace row exists, then lock them (in id order: no deadlocks): a concurrent writer of the
    # same trace waits here, and aggregates after our commit, so the last writer always sees every span.
    Trace.objects.bulk_create(
        [
            Trace(trace_id=t, start_time=trace_meta.get(t, {}).get("start_time") or now, source=source)
            for t in trace_ids
        ],
        ignore_conflicts=True,
    )
    locked = {
        t.trace_id: t for t in Trace.objects.select_for_update().filter(trace_id__in=trace_ids).order_by("trace_id")
    }
    aggregates = {
        row["trace_id"]: row
        for row in Span.objects.filter(trace_id__in=trace_ids)
        .values("trace_id")
        .annotate(
            start=Min("start_time"),
            end=Max("end_time"),
            n=Count("id"),
            llm=Count("id", filter=Q(kind=SpanKind.LLM)),
            errors=Count("id", filter=~Q(status="ok")),
            in_t=Sum("input_tokens"),
            out_t=Sum("output_tokens"),
            cached_t=Sum("cached_tokens"),
            reasoning_t=Sum("reasoning_tokens"),
            total_cost=Sum("cost"),
        )
        .order_by()
    }
    roots: dict[str, dict[str, Any]] = {}
    for row in (
        Span.objects.filter(trace_id__in=trace_ids, parent_span_id__isnull=True)
        .order_by("trace_id", "start_time")
        .values("trace_id", "name", "status")
    ):
        roots.setdefault(row["trace_id"], row)
    rows: list[Trace] = []
    for trace_id in trace_ids:
        agg = aggregates.get(trace_id)
        meta = trace_meta.get(trace_id, {})
        trace = locked[trace_id]
        for key in TRACE_META_FIELDS:
            value = meta.get(key)
            if value not in (None, "", []) and (key == "tags" or getattr(trace, key) in (None, "", [])):
                setattr(trace, key, value)
        root = roots.get(trace_id)
        if root and not meta.get("name"):
            trace.name = trace.name or root["name"]
        if agg:
            trace.start_time = min(agg["start"], meta.get("start_time") or agg["start"])
            trace.end_time = max(agg["end"], meta.get("end_time") or agg["end"])
            trace.duration_ms = _duration_ms(trace.start_time, trace.end_time)
            trace.span_count = agg["n"]
            trace.llm_call_count = agg["llm"]
            trace.error_count = agg["errors"]
            trace.input_tokens = agg["in_t"] or 0
            trace.output_tokens = agg["out_t"] or 0
            trace.cached_tokens = agg["cached_t"] or 0
            trace.reasoning_tokens = agg["reasoning_t"] or 0
            trace.cost = agg["total_cost"] or Decimal(0)
        status = meta.get("status") or (root["status"] if root else ("error" if agg and agg["errors"] else "ok"))
        trace.status = status if status in Trace.Status.values else Trace.Status.ERROR
        rows.append(trace)
    update_fields = [
        f.name for f in Trace._meta.concrete_fields if not f.primary_key and f.name not in ("trace_id", "source")
    ]
    for row in rows:
        row.pk = None  # an upsert by trace_id (rows are locked above): one cheap statement, unlike bulk_update
    Trace.objects.bulk_create(rows, update_conflicts=True, unique_fields=["trace_id"], update_fields=update_fields)


def traces_purge(*, older_than_days: int | None = None, batch_size: int = 5000, max_batches: int = 1000) -> int:
    """Delete traces (and their spans) that started before the retention cut-off, in batches. Returns traces
    deleted. Spans whose trace row is missing are removed by their own start time."""
    days = settings.TRACE_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    for _ in range(max_batches):
        ids = list(Trace.objects.filter(start_time__lt=cutoff).values_list("trace_id", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            Span.objects.filter(trace_id__in=ids).delete()
            deleted += Trace.objects.filter(trace_id__in=ids).delete()[0]
    for _ in range(max_batches):
        ids = list(Span.objects.filter(end_time__lt=cutoff).values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        Span.objects.filter(id__in=ids).delete()
    return deleted


@dataclass
class IngestResult:
    accepted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def spans_ingest(
    *,
    user_id: int,
    is_staff: bool,
    traces: list[tuple[int, dict[str, Any]]],
    spans: list[tuple[int, dict[str, Any]]],
) -> IngestResult:
    """Store validated ingested items (index, data), attributed to `user_id`. Items naming a trace that belongs
    to another user are refused (unless the caller is staff). Idempotent by span id."""
    result = IngestResult()
    trace_ids = {d["trace_id"] for _, d in traces} | {d["trace_id"] for _, d in spans}
    owners = dict(Trace.objects.filter(trace_id__in=trace_ids).values_list("trace_id", "user_id"))

    def foreign(trace_id: str) -> bool:
        owner = owners.get(trace_id)
        return not is_staff and owner is not None and owner != user_id

    trace_meta: dict[str, dict[str, Any]] = {}
    for index, data in traces:
        if foreign(data["trace_id"]):
            result.errors.append(_foreign_error("trace", index))
            continue
        meta = {k: v for k, v in data.items() if k != "trace_id" and v not in (None, "", [])}
        meta["user_id"] = user_id
        trace_meta[data["trace_id"]] = meta
        result.accepted += 1
    rows: list[dict[str, Any]] = []
    for index, data in spans:
        if foreign(data["trace_id"]):
            result.errors.append(_foreign_error("span", index))
            continue
        span = Span(
            **{k: v for k, v in data.items() if k not in ("error_code", "error_message", "attributes")},
            error_code=data.get("error_code") or "",
            error_message=data.get("error_message") or "",
            attributes=data.get("attributes") or {},
            duration_ms=_duration_ms(data["start_time"], data["end_time"]),
            user_id=user_id,
        )
        rows.append(span_row_from_instance(span, meta={"user_id": user_id}, billed=bool(span.model)))
        result.accepted += 1
    if rows or trace_meta:
        spans_write(spans=[dict(row) for row in rows], trace_meta=trace_meta, source="ingest")  # it prices its own
    # LLM spans cost money: whoever keeps costs (the costs app) gets them through the hub, in one call
    hub.emit_ingested_llm_spans([row for row in rows if row["kind"] == SpanKind.LLM], user_id=user_id)
    return result


def _foreign_error(kind: str, index: int) -> dict[str, Any]:
    return {"kind": kind, "index": index, "field": "trace_id", "message": "This trace belongs to another user."}
