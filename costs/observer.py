"""The costs sink: prices every billed LLM call attempt and reserves/settles hard budgets.

Hot path (`on_llm_call`, usually inside an event loop): price the call from the in-process price cache (a dict
lookup keyed by provider and model, no query), return the cost as an annotation and buffer the raw record with
its price; the `CostRecord` instance, budget charges and alerts are built in `flush()`, off the hot path.
`abefore_llm_call` checks the in-process budget index against the budgets' version stamp in the shared cache (one
GET, in a worker thread: a budget changed by any process applies to the next call) and reserves only when a hard
budget applies to the caller; a stale price cache is refreshed from a background thread, so the loop never waits
for it once it is loaded. A budget check that fails (database locked or down) refuses the call with
`BUDGET_CHECK_FAILED`: budgets fail closed.
In a Celery worker (where a kill -9 would lose the buffer) each attempt is also stored as "started" before its
request (one insert, off the loop) and its record is written as soon as it ends (by the writer thread).
LLM spans ingested from outside applications arrive through `on_ingested_llm_spans` (one call per ingest request)
and become cost records at once. `CostsConfig.ready()` also registers the price table as the hub's pricer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async

from agent_platform.api.errors import PlatformError
from agent_platform.celery import in_worker
from agent_platform.observability.buffer import BatchBuffer
from agent_platform.observability.hooks import LLMCallEstimate, LLMCallRecord, Observer
from costs.budgets import budget_index
from costs.models import CostRecord
from costs.pricing import in_event_loop, price_cache

logger = logging.getLogger("costs")


def budget_check_failed(estimate: LLMCallEstimate, exc: Exception) -> PlatformError:
    """A budget check that could not run (database locked or down, a timeout) refuses the call: letting it through
    unchecked would let spend pass a hard limit unseen (fail closed)."""
    logger.warning("budget check for %s failed, call refused: %s", estimate.endpoint, type(exc).__name__, exc_info=exc)
    return PlatformError(
        f"The budget of this call could not be checked ({type(exc).__name__}); the call was refused. Retry shortly.",
        code="BUDGET_CHECK_FAILED",
        details={"endpoint": estimate.endpoint, "reason": type(exc).__name__},
        headers={"Retry-After": "1"},
    )


def warm_prices(load: Callable[[], object]) -> None:
    """Load the price cache ahead of the call; a failure only leaves the call to be priced when it is written (a
    budget that applies still needs the prices, and fails closed in its own check)."""
    try:
        load()
    except Exception:
        logger.warning("loading the price cache failed", exc_info=True)


def record_start(estimate: LLMCallEstimate) -> None:
    """In a worker, store the attempt before its request goes out, so that a worker killed during the call (whose
    buffer dies with it) still leaves a record of the request. A failure here only loses that safety net."""
    from costs.services import cost_record_start

    try:
        cost_record_start(estimate=estimate)
    except Exception:
        logger.warning("recording the start of attempt %s failed", estimate.attempt_id, exc_info=True)


class CostObserver(Observer):
    name = "costs"

    def __init__(self, *, max_items: int = 500) -> None:
        self.buffer: BatchBuffer[tuple[str, Any, Any]] = BatchBuffer("costs", self._write, max_items=max_items)

    # --- before the call: hard budgets -------------------------------------------------------------------------
    def before_llm_call(self, estimate: LLMCallEstimate) -> None:
        self._check_budgets(estimate)
        if in_worker():
            record_start(estimate)

    async def abefore_llm_call(self, estimate: LLMCallEstimate) -> None:
        await self._acheck_budgets(estimate)
        if in_worker():
            await database_sync_to_async(record_start, thread_sensitive=False)(estimate)

    def _check_budgets(self, estimate: LLMCallEstimate) -> None:
        from costs.services import budget_reserve_for_estimate

        warm_prices(price_cache.rows)
        try:
            budget_reserve_for_estimate(estimate=estimate)  # checks the budgets' version stamp first
        except PlatformError:
            raise
        except Exception as exc:
            raise budget_check_failed(estimate, exc) from exc

    async def _acheck_budgets(self, estimate: LLMCallEstimate) -> None:
        from costs.services import budget_reserve_for_estimate

        # keep prices warm for on_llm_call, which runs in the loop: only a cold cache is waited for
        if not price_cache.loaded:
            await database_sync_to_async(warm_prices, thread_sensitive=False)(price_cache.rows)
        elif not price_cache.is_fresh():
            price_cache.refresh_in_background()
        try:
            # off the loop (on threads that give their database connection back to the pool afterwards): the
            # budget index's stamp check (one cache GET, shared by concurrent calls; a reload only
            # after a budget changed), then a reservation only when a hard budget applies to the caller
            await budget_index.arefresh()
            if not budget_index.matching(estimate.caller, hard_only=True):
                return
            await database_sync_to_async(budget_reserve_for_estimate, thread_sensitive=False)(
                estimate=estimate, refresh=False
            )
        except PlatformError:
            raise
        except Exception as exc:
            raise budget_check_failed(estimate, exc) from exc

    # --- after the call ------------------------------------------------------------------------------------------
    def on_llm_call(self, record: LLMCallRecord) -> dict[str, Any] | None:
        from costs.services import price_llm_call

        if not record.is_billed:
            self._buffer(("release", record.attempt_id, None))
            return None
        if not in_event_loop():
            price_cache.rows()  # sync callers may (re)load the cache here; in a loop it is used as it is
        priced = price_llm_call(record)
        self._buffer(("record", record, priced))
        if priced is None or priced[0] is None:
            return None
        return {"cost": priced[1].total}

    def _buffer(self, item: tuple[str, Any, Any]) -> None:
        self.buffer.add(item)
        if in_worker():
            # the attempt's record was stored as "started": complete it now (in a loop, from the writer thread),
            # not at the task's end, so that a worker killed later leaves it as it ended
            self.buffer.flush()

    def on_ingested_llm_spans(self, spans: list[dict[str, Any]], *, user_id: int | None) -> None:
        from costs.services import cost_records_from_spans

        # not buffered: the ingest request is already off the hot path, and its answer means "stored"
        cost_records_from_spans(spans=spans, user_id=user_id)

    def flush(self) -> None:
        self.buffer.flush()

    def settle(self) -> None:
        if not self.buffer.settle():
            logger.error("costs: buffered cost records are not all stored (kept for the next flush)")

    def _write(self, items: list[tuple[str, Any, Any]]) -> None:
        from costs.services import cost_record_build, cost_records_write

        records: list[CostRecord] = [
            cost_record_build(item, priced=priced) for kind, item, priced in items if kind == "record"
        ]
        released = [item for kind, item, _ in items if kind == "release"]
        if records or released:
            cost_records_write(records=records, released_attempts=released)


observer = CostObserver()
