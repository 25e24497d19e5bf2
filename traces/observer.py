"""The traces sink: every `SpanRecord` and `LLMCallRecord` becomes a `Span` row, buffered and written in batches.

The hot path only appends the record as it came (no conversion, no pricing, no query; safe inside an event loop)
to a bounded buffer. `flush()` — end of request, end of task, buffer full, periodically, process exit — turns the
batch into span rows (billed LLM spans priced by the hub's pricer: the costs app's in-process price cache), writes
them with one bulk insert (COPY on PostgreSQL for big batches) and one trace upsert; inside an event loop it hands
the batch to a background thread.
With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each written batch is also exported over OTLP/HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from agent_platform.observability.buffer import BatchBuffer
from agent_platform.observability.hooks import LLMCallRecord, Observer, SpanRecord

logger = logging.getLogger("traces")


class TraceObserver(Observer):
    name = "traces"

    def __init__(self, *, max_items: int = 1000, hard_cap: int = 100_000) -> None:
        self.last_export = None
        self.buffer: BatchBuffer[SpanRecord | LLMCallRecord] = BatchBuffer(
            "traces", self._write, max_items=max_items, hard_cap=hard_cap
        )

    def on_span(self, record: SpanRecord) -> None:
        self.buffer.add(record)

    def on_llm_call(self, record: LLMCallRecord) -> None:
        self.buffer.add(record)
        return None

    def flush(self) -> None:
        self.buffer.flush()

    def drain(self) -> None:
        self.buffer.drain()

    def _write(self, records: list[SpanRecord | LLMCallRecord]) -> None:
        from traces.services import span_row_from_llm_call, span_row_from_record, spans_write

        rows: list[dict[str, Any]] = [
            span_row_from_llm_call(record, billed=record.is_billed)  # priced in spans_write (by the hub's pricer)
            if isinstance(record, LLMCallRecord)
            else span_row_from_record(record)
            for record in records
        ]
        spans_write(spans=rows)
        if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
            from traces.otlp import export_spans_in_background

            self.last_export = export_spans_in_background(rows)


observer = TraceObserver()
