"""Span ingestion: the traces sink's batched path vs one INSERT per span, same database, same run.

Batched path: spans are emitted to the observer hub as `SpanRecord`s (what `start_span` does), buffered by the
traces observer and written by `flush()` (COPY on PostgreSQL / bulk INSERT on SQLite, plus the trace upsert with
re-aggregated totals), in batches of 1,000 spans, 20 spans per trace.
Baseline: `Span.objects.create(...)` per span (autocommit: one INSERT and one commit per span), no trace upsert.
Targets: batched ≥ 5,000 spans/s and ≥ 10× the single-insert rate.

Runs on its own throw-away database (`test_bench_ingest_<pid>` on PostgreSQL, in-memory SQLite otherwise).
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime, timedelta

from bench.harness import Comparison, Stats, report, setup_django

BATCHED_SPANS = int(os.environ.get("BENCH_INGEST_SPANS", "50000"))
SINGLE_SPANS = int(os.environ.get("BENCH_INGEST_SINGLE_SPANS", "2000"))
BATCH = 1000
SPANS_PER_TRACE = 20


def main() -> None:
    os.environ.setdefault("CACHE_KEY_PREFIX", f"benchingest{os.getpid()}")
    os.environ.setdefault("OBSERVER_FLUSH_SECONDS", "0")  # batches are cut by the buffer size here, not by a timer
    setup_django()
    from django.conf import settings
    from django.db import connection

    connection.settings_dict["TEST"]["NAME"] = f"test_bench_ingest_{os.getpid()}" if settings.USING_POSTGRES else None
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def records(n: int):
    from agent_platform.observability.context import Caller
    from agent_platform.observability.hooks import SpanKind, SpanRecord

    t0 = datetime.now(UTC)
    out = []
    trace_id = parent = None
    for i in range(n):
        if i % SPANS_PER_TRACE == 0:
            trace_id, parent = secrets.token_hex(16), None
        span_id = secrets.token_hex(8)
        start = t0 + timedelta(milliseconds=i)
        out.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                kind=SpanKind.TOOL if i % 3 else SpanKind.AGENT_RUN,
                name=f"step {i % SPANS_PER_TRACE}",
                started_at=start,
                ended_at=start + timedelta(milliseconds=3),
                input={"query": "what is the weather in Paris?", "i": i},
                output={"answer": "sunny", "tokens": 42},
                attributes={"tool": "weather", "attempt": 1},
                caller=Caller(user_id=1, agent_id=2, run_id="bench"),
            )
        )
        parent = parent or span_id
    return out


def run() -> None:
    from django.conf import settings

    from agent_platform.observability.hooks import hub
    from traces.models import Span, Trace
    from traces.observer import observer
    from traces.services import span_instance, span_row_from_record

    database = "postgresql" if settings.USING_POSTGRES else "sqlite"

    # warm-up (creates the COPY staging table, primes caches)
    for r in records(BATCH):
        hub.emit_span(r)
    hub.flush()

    # batched: emit everything through the hub; the buffer flushes itself every 1,000 spans
    batched = records(BATCHED_SPANS)
    observer.buffer.max_items = BATCH
    per_span_ms: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(batched), BATCH):
        t0 = time.perf_counter()
        for r in batched[i : i + BATCH]:
            hub.emit_span(r)
        hub.flush()
        per_span_ms.extend([(time.perf_counter() - t0) * 1000 / BATCH] * BATCH)
    batched_total = time.perf_counter() - started
    batched_stats = Stats.from_samples("batched", per_span_ms, batched_total)
    stored = Span.objects.filter(span_id__in=[r.span_id for r in batched[:100]]).count()
    assert stored == 100, stored
    assert Trace.objects.filter(trace_id=batched[0].trace_id, span_count=SPANS_PER_TRACE).exists()

    # baseline: one INSERT (and commit) per span
    singles = [span_instance(span_row_from_record(r)) for r in records(SINGLE_SPANS)]
    samples: list[float] = []
    started = time.perf_counter()
    for span in singles:
        t0 = time.perf_counter()
        span.save(force_insert=True)
        samples.append((time.perf_counter() - t0) * 1000)
    single_total = time.perf_counter() - started
    single_stats = Stats.from_samples("single insert", samples, single_total)

    batched_rate = BATCHED_SPANS / batched_total
    single_rate = SINGLE_SPANS / single_total
    ratio = batched_rate / single_rate
    met = batched_rate >= 5000 and ratio >= 10
    print(f"batched: {batched_rate:,.0f} spans/s ({BATCHED_SPANS} spans); single insert: {single_rate:,.0f} spans/s "
          f"({SINGLE_SPANS} spans); {ratio:.1f}x")  # fmt: skip
    report(
        name="ingest",
        title=f"Span ingestion on {database}: batched (per span) vs one INSERT per span",
        comparisons=[
            Comparison(
                "span write, batched vs single insert",
                batched_stats,
                single_stats,
                target=">= 5,000 spans/s and >= 10x single",
                met=met,
                note=f"{batched_rate:,.0f} vs {single_rate:,.0f} spans/s, {ratio:.1f}x",
            )
        ],
        extra={
            "batched_spans_per_s": batched_rate,
            "single_spans_per_s": single_rate,
            "ratio": ratio,
            "batched_spans": BATCHED_SPANS,
            "single_spans": SINGLE_SPANS,
            "batch_size": BATCH,
        },
    )


if __name__ == "__main__":
    main()
