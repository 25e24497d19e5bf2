"""The costs sink: prices every billed LLM call attempt and reserves/settles hard budgets.

Hot path (`on_llm_call`, usually inside an event loop): price the call from the in-process price cache (a dict
lookup keyed by provider and model, no query), return the cost as an annotation and buffer the raw record with
its price; the `CostRecord` instance, budget charges and alerts are built in `flush()`, off the hot path.
`abefore_llm_call` checks the in-process budget index against the budgets' version stamp in the shared cache (one
GET, in a worker thread: a budget changed by any process applies to the next call) and reserves only when a hard
budget applies to the caller; a stale price cache is refreshed from a background thread, so the loop never waits
for it once it is loaded.
LLM spans ingested from outside applications arrive through `on_ingested_llm_spans` (one call per ingest request)
and become cost records at once. `CostsConfig.ready()` also registers the price table as the hub's pricer.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from agent_platform.observability.buffer import BatchBuffer
from agent_platform.observability.hooks import LLMCallEstimate, LLMCallRecord, Observer
from costs.budgets import budget_index
from costs.models import CostRecord
from costs.pricing import in_event_loop, price_cache


class CostObserver(Observer):
    name = "costs"

    def __init__(self, *, max_items: int = 500) -> None:
        self.buffer: BatchBuffer[tuple[str, Any, Any]] = BatchBuffer("costs", self._write, max_items=max_items)

    # --- before the call: hard budgets -------------------------------------------------------------------------
    def before_llm_call(self, estimate: LLMCallEstimate) -> None:
        from costs.services import budget_reserve_for_estimate

        price_cache.rows()
        budget_reserve_for_estimate(estimate=estimate)

    async def abefore_llm_call(self, estimate: LLMCallEstimate) -> None:
        from costs.services import budget_reserve_for_estimate

        # keep prices warm for on_llm_call, which runs in the loop: only a cold cache is waited for
        if not price_cache.loaded:
            await sync_to_async(price_cache.rows, thread_sensitive=False)()
        elif not price_cache.is_fresh():
            price_cache.refresh_in_background()
        # off the loop: the budget index's stamp check (one cache GET, shared by concurrent calls; a reload only after
        # a budget changed), then a reservation only when a hard budget applies to the caller
        await budget_index.arefresh()
        if not budget_index.matching(estimate.caller, hard_only=True):
            return
        await sync_to_async(budget_reserve_for_estimate, thread_sensitive=False)(estimate=estimate, refresh=False)

    # --- after the call ------------------------------------------------------------------------------------------
    def on_llm_call(self, record: LLMCallRecord) -> dict[str, Any] | None:
        from costs.services import price_llm_call

        if not record.is_billed:
            self.buffer.add(("release", record.attempt_id, None))
            return None
        if not in_event_loop():
            price_cache.rows()  # sync callers may (re)load the cache here; in a loop it is used as it is
        priced = price_llm_call(record)
        self.buffer.add(("record", record, priced))
        if priced is None or priced[0] is None:
            return None
        return {"cost": priced[1]}

    def on_ingested_llm_spans(self, spans: list[dict[str, Any]], *, user_id: int | None) -> None:
        from costs.services import cost_records_from_spans

        # not buffered: the ingest request is already off the hot path, and its answer means "stored"
        cost_records_from_spans(spans=spans, user_id=user_id)

    def flush(self) -> None:
        self.buffer.flush()

    def _write(self, items: list[tuple[str, Any, Any]]) -> None:
        from costs.services import cost_record_build, cost_records_write

        records: list[CostRecord] = [
            cost_record_build(item, priced=priced) for kind, item, priced in items if kind == "record"
        ]
        released = [item for kind, item, _ in items if kind == "release"]
        if records or released:
            cost_records_write(records=records, released_attempts=released)


observer = CostObserver()
