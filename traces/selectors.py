"""Reads of the traces app: filtered trace lists, a trace's span tree (one query, built in Python), LLM stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour

from agent_platform.api.errors import PlatformError
from agent_platform.observability.hooks import SpanKind
from traces.models import Span, Trace


def traces_visible_to(user) -> QuerySet[Trace]:
    """Staff see every trace; everyone else only the traces attributed to them."""
    qs = Trace.objects.all()
    if not user.is_staff:
        qs = qs.filter(user_id=user.pk)
    return qs


def trace_list(
    *,
    user,
    user_id: int | None = None,
    agent: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    name: str | None = None,
) -> QuerySet[Trace]:
    qs = traces_visible_to(user)
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    if agent:
        qs = qs.filter(agent_id=int(agent)) if str(agent).isdigit() else qs.filter(agent_slug=agent)
    if status:
        qs = qs.filter(status=status)
    if since:
        qs = qs.filter(start_time__gte=since)
    if until:
        qs = qs.filter(start_time__lt=until)
    if name:
        qs = qs.filter(name__icontains=name)
    if model:
        qs = qs.filter(trace_id__in=Span.objects.filter(model=model).values("trace_id"))
    return qs.order_by("-start_time", "-id")


@dataclass
class SpanNode:
    span: Span
    depth: int = 0
    children: list[SpanNode] = field(default_factory=list)
    offset_pct: float = 0.0
    width_pct: float = 0.0

    @property
    def indent(self) -> int:
        return min(self.depth, 24)


@dataclass
class TraceTree:
    trace: Trace
    roots: list[SpanNode]
    flat: list[SpanNode]  # depth-first order, for a waterfall


def trace_get(*, user, trace_id: str) -> Trace:
    trace = traces_visible_to(user).filter(trace_id=trace_id.lower()).first()
    if trace is None:
        raise PlatformError(f"No trace '{trace_id}'.", code="TRACE_NOT_FOUND", field="trace_id")
    return trace


def trace_tree(*, user, trace_id: str) -> TraceTree:
    """The trace and its spans as a tree (one query for the spans; orphans — whose parent is not stored — become
    roots), with each span's offset and width in percent of the trace's duration."""
    trace = trace_get(user=user, trace_id=trace_id)
    spans = list(Span.objects.filter(trace_id=trace.trace_id).order_by("start_time", "id"))
    nodes = {s.span_id: SpanNode(span=s) for s in spans}
    roots: list[SpanNode] = []
    for node in nodes.values():
        parent = nodes.get(node.span.parent_span_id) if node.span.parent_span_id else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    start = min((s.start_time for s in spans), default=trace.start_time)
    end = max((s.end_time for s in spans), default=trace.end_time or trace.start_time)
    total = max((end - start).total_seconds(), 1e-6)
    flat: list[SpanNode] = []
    stack = [(r, 0) for r in reversed(roots)]
    seen: set[str] = set()
    while stack:
        node, depth = stack.pop()
        if node.span.span_id in seen:
            continue
        seen.add(node.span.span_id)
        node.depth = depth
        node.offset_pct = round((node.span.start_time - start).total_seconds() / total * 100, 3)
        node.width_pct = max(round((node.span.end_time - node.span.start_time).total_seconds() / total * 100, 3), 0.3)
        flat.append(node)
        stack.extend((c, depth + 1) for c in reversed(node.children))
    return TraceTree(trace=trace, roots=roots, flat=flat)


def slowest_traces(*, user, since: datetime, limit: int = 10) -> list[Trace]:
    return list(traces_visible_to(user).filter(start_time__gte=since).order_by("-duration_ms")[:limit])


def failed_traces(*, user, since: datetime, limit: int = 10) -> list[Trace]:
    return list(traces_visible_to(user).filter(start_time__gte=since, status="error").order_by("-start_time")[:limit])


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def llm_call_stats(*, start: datetime, end: datetime, bucket: str = "hour", user=None) -> list[dict[str, Any]]:
    """Per time bucket: LLM call attempts, errors, tokens, latency p50/p95 (ms), from the LLM spans."""
    qs = Span.objects.filter(kind=SpanKind.LLM, start_time__gte=start, start_time__lt=end)
    if user is not None and not user.is_staff:
        qs = qs.filter(user_id=user.pk)
    trunc = TruncHour("start_time", tzinfo=UTC) if bucket == "hour" else TruncDay("start_time", tzinfo=UTC)
    rows = {
        r["b"]: r
        for r in qs.annotate(b=trunc)
        .values("b")
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=~Q(status="ok")),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by()
    }
    percentiles: dict[datetime, tuple[float | None, float | None]] = {}
    if connection.vendor == "postgresql":
        unit = "hour" if bucket == "hour" else "day"
        sql, params = qs.values("id").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT date_trunc('{unit}', s.start_time AT TIME ZONE 'UTC') AS b, "  # noqa: S608
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY s.duration_ms), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms) "
                f"FROM traces_span s WHERE s.id IN ({sql}) GROUP BY 1",
                params,
            )
            for b, p50, p95 in cursor.fetchall():
                percentiles[b.replace(tzinfo=UTC)] = (p50, p95)
    else:
        durations: dict[datetime, list[float]] = {}
        for b, d in qs.annotate(b=trunc).values_list("b", "duration_ms")[:200_000]:
            durations.setdefault(b, []).append(d)
        percentiles = {b: (_percentile(v, 0.5), _percentile(v, 0.95)) for b, v in durations.items()}
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket != "hour":
        first = first.replace(hour=0)
    out = []
    b = first
    while b < end:
        row = rows.get(b, {})
        p50, p95 = percentiles.get(b, (None, None))
        out.append(
            {
                "bucket": b,
                "calls": row.get("calls", 0),
                "errors": row.get("errors", 0),
                "tokens": (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0),
                "p50_ms": round(p50, 1) if p50 is not None else None,
                "p95_ms": round(p95, 1) if p95 is not None else None,
            }
        )
        b += step
    return out


def llm_latency(*, start: datetime, end: datetime, user=None) -> tuple[float | None, float | None]:
    """p50 and p95 latency (ms) of the LLM call attempts in [start, end)."""
    qs = Span.objects.filter(kind=SpanKind.LLM, start_time__gte=start, start_time__lt=end)
    if user is not None and not user.is_staff:
        qs = qs.filter(user_id=user.pk)
    if connection.vendor == "postgresql":
        sql, params = qs.values("duration_ms").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.duration_ms), "  # noqa: S608
                f"percentile_cont(0.95) WITHIN GROUP (ORDER BY d.duration_ms) FROM ({sql}) d",
                params,
            )
            return cursor.fetchone()
    values = list(qs.values_list("duration_ms", flat=True)[:200_000])
    return _percentile(values, 0.5), _percentile(values, 0.95)


PROMPT_CALL_FIELDS = (
    "id",
    "trace_id",
    "prompt_version",
    "status",
    "duration_ms",
    "cost",
    "input_tokens",
    "output_tokens",
)


def prompt_llm_calls(
    *, prompt_name: str, start: datetime, end: datetime, user=None, include_experiments: bool = False, limit: int
) -> list[dict[str, Any]]:
    """The LLM call spans made with prompt `prompt_name` in [start, end), newest first, at most `limit`, as plain
    dicts: id, trace_id, prompt_version, status, duration_ms, cost (Decimal or None), input_tokens, output_tokens,
    ab_variant ("" when none). Calls made by experiments are left out unless `include_experiments`. Staff see every
    call; anyone else only the calls attributed to them."""
    from django.db.models.fields.json import KT

    qs = Span.objects.filter(kind=SpanKind.LLM, prompt_name=prompt_name, start_time__gte=start, start_time__lt=end)
    if user is not None and not user.is_staff:
        qs = qs.filter(user_id=user.pk)
    if not include_experiments:
        qs = qs.exclude(attributes__has_key="experiment_id")
    rows = qs.annotate(ab_variant=KT("attributes__ab_variant")).order_by("-start_time", "-id")
    return [
        {**row, "ab_variant": row["ab_variant"] or ""} for row in rows.values(*PROMPT_CALL_FIELDS, "ab_variant")[:limit]
    ]


def llm_call_samples(*, span_ids: list[int], limit: int) -> list[dict[str, Any]]:
    """Input, output, duration_ms and cost of the successful LLM call spans among the first `limit` of `span_ids`
    (plain dicts, for scoring outputs offline). The caller passes ids it was allowed to read."""
    return list(
        Span.objects.filter(kind=SpanKind.LLM, id__in=span_ids[:limit], status="ok").values(
            "id", "input", "output", "duration_ms", "cost"
        )
    )
