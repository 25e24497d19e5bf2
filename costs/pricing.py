"""Price matching and cost arithmetic, from an in-process cache of the price table.

The hot path (`on_llm_call`, possibly inside an event loop) never queries the database: it reads the cache as it
is, through a per-(provider, model) memo (a dict lookup and a bisect, not a scan of the table). The cache is
(re)loaded where the database may be used (a flush, a service, a request), when it is older than
`PRICE_CACHE_TTL` seconds or when the price table's version stamp (bumped on every price write) changed; callers
in an event loop hand a due refresh to a background thread and go on with the rows they have.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase

from agent_platform.cache_safe import safe_cache as cache  # a cache outage reads as a miss
from costs.models import WILDCARDS

MILLION = Decimal(1_000_000)
QUANT = Decimal("0.0000000001")
PRICE_CACHE_TTL = 30.0
VERSION_KEY = "costs:prices:version"
logger = logging.getLogger("costs")


@dataclass(frozen=True)
class PriceRow:
    id: int
    provider: str
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None
    reasoning_per_million: Decimal | None
    per_request: Decimal
    currency: str
    effective_from: datetime
    cache_write_per_million: Decimal | None = None
    bills_failed_requests: bool = False

    @property
    def is_pattern(self) -> bool:
        return any(ch in WILDCARDS for ch in self.model)

    @property
    def literal_chars(self) -> int:
        return sum(1 for ch in self.model if ch not in WILDCARDS)


@dataclass(frozen=True)
class Tokens:
    """Usage as vendors report it: `input` includes cached reads and cache writes, `output` includes reasoning."""

    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class CostParts:
    """The cost of one attempt per token kind; `total` is their sum (what a cost record's `cost` holds)."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_read: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)
    reasoning: Decimal = Decimal(0)
    request: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cached_read + self.cache_write + self.reasoning + self.request


def model_names(model: str) -> tuple[str, ...]:
    """The names a call's model may be priced under: as given and without its `provider/` prefix."""
    if "/" in model:
        return (model, model.split("/", 1)[1])
    return (model,)


def match_price(rows: list[PriceRow], *, provider: str, model: str, at: datetime) -> PriceRow | None:
    """The row that prices `model` at `at`: exact beats pattern, provider-specific beats any-provider, the most
    specific pattern wins, then the latest `effective_from` not after `at`."""
    names = model_names(model)
    best: PriceRow | None = None
    best_rank: tuple = ()
    for row in rows:
        if row.effective_from > at or (row.provider and row.provider != provider):
            continue
        if row.is_pattern:
            if not any(fnmatchcase(name, row.model) for name in names):
                continue
            rank = (0, bool(row.provider), row.literal_chars, row.effective_from)
        else:
            if row.model not in names:
                continue
            rank = (1, bool(row.provider), len(row.model), row.effective_from)
        if best is None or rank > best_rank:
            best, best_rank = row, rank
    return best


def cost_parts(price: PriceRow, tokens: Tokens, *, failed: bool = False) -> CostParts:
    """Cost of one attempt per token kind, each part rounded to the stored precision (so the parts add up to the
    stored total exactly). Cached reads, cache writes and reasoning tokens are charged at their own prices (the
    plain price when a row has none), the rest of input and output at the plain prices. A failed attempt pays for
    the tokens the vendor reported, and the per-request price only when the row bills failed requests."""
    total_in = max(tokens.input, 0)
    cached = min(max(tokens.cached, 0), total_in)
    cache_write = min(max(tokens.cache_write, 0), total_in - cached)
    reasoning = min(max(tokens.reasoning, 0), max(tokens.output, 0))
    plain_in = total_in - cached - cache_write
    plain_out = max(tokens.output, 0) - reasoning

    def part(count: int, per_million: Decimal | None, fallback: Decimal) -> Decimal:
        rate = fallback if per_million is None else per_million
        return (count * rate / MILLION).quantize(QUANT)

    bills_request = not failed or price.bills_failed_requests
    return CostParts(
        input=part(plain_in, price.input_per_million, price.input_per_million),
        output=part(plain_out, price.output_per_million, price.output_per_million),
        cached_read=part(cached, price.cached_input_per_million, price.input_per_million),
        cache_write=part(cache_write, price.cache_write_per_million, price.input_per_million),
        reasoning=part(reasoning, price.reasoning_per_million, price.output_per_million),
        request=price.per_request.quantize(QUANT) if bills_request else Decimal(0).quantize(QUANT),
    )


def compute_cost(price: PriceRow, tokens: Tokens, *, failed: bool = False) -> Decimal:
    """Cost of one attempt: the sum of its `cost_parts`."""
    return cost_parts(price, tokens, failed=failed).total


def in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def price_timeline(rows: list[PriceRow], *, provider: str, model: str) -> tuple[list[datetime], list[PriceRow | None]]:
    """Where `match_price` changes its answer for one (provider, model): the distinct `effective_from` of the rows
    that may price it, each with the row that wins from then on (same rules as `match_price`)."""
    names = model_names(model)
    candidates = [
        row
        for row in rows
        if not (row.provider and row.provider != provider)
        and (any(fnmatchcase(name, row.model) for name in names) if row.is_pattern else row.model in names)
    ]
    starts = sorted({row.effective_from for row in candidates})
    return starts, [match_price(candidates, provider=provider, model=model, at=start) for start in starts]


_refresher: ThreadPoolExecutor | None = None
_refresher_lock = threading.Lock()


def run_in_background(name: str, fn) -> None:
    """Run `fn` on the costs app's refresh thread (one, kept: handing work to it never waits for a thread to start,
    which on a busy host would stall the caller's event loop); a database connection it opened is closed afterwards
    (reloads are rare: a kept connection would only hold a server slot)."""
    global _refresher

    def run() -> None:
        from django.db import connections

        try:
            fn()
        except Exception:
            logger.exception("%s failed", name)
        finally:
            connections.close_all()  # this thread's connections only

    with _refresher_lock:
        if _refresher is None:
            _refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costs-refresh")
        _refresher.submit(run)


def _after_fork() -> None:
    """A forked child has no refresh thread (and no refresh in flight) of its own."""
    global _refresher, _refresher_lock
    _refresher, _refresher_lock = None, threading.Lock()
    price_cache._refreshing = False
    from costs.budgets import budget_index

    budget_index.forget_checks()


_MISSING = object()
MEMO_MAX = 10_000


class PriceCache:
    """The price table in memory, plus a per-(provider, model) memo of the matching rows over time, so that pricing
    a call is a dict lookup and a bisect (no scan of the table on the hot path)."""

    def __init__(self) -> None:
        self._data: tuple[list[PriceRow], dict] | None = None  # (rows, memo), swapped as one
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._version: object = None
        self._generation = 0
        self._refreshing = False
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        with self._lock:
            self._data = None
            self._generation += 1

    def is_fresh(self) -> bool:
        now = time.monotonic()
        return self._data is not None and now - self._loaded_at <= PRICE_CACHE_TTL and now - self._checked_at <= 1.0

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def rows(self, *, refresh: bool = True) -> list[PriceRow] | None:
        """The cached rows; with `refresh`, reload them first when stale (never inside an event loop)."""
        if refresh and not in_event_loop():
            self._refresh()
        data = self._data
        return None if data is None else data[0]

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._data is None or now - self._loaded_at > PRICE_CACHE_TTL:
            self._reload()
            if self._data is None:  # invalidated meanwhile: read again
                self._reload()
        elif now - self._checked_at > 1.0:
            self._checked_at = now
            if cache.get(VERSION_KEY) != self._version:
                self._reload()

    def recheck(self) -> None:
        """Ask the version stamp now rather than at most once a second, and reload if prices changed: before a call
        is refused for want of a price that another process may have saved a moment ago."""
        if self._data is None or cache.get(VERSION_KEY) != self._version:
            self._reload()
        self._checked_at = time.monotonic()

    def refresh_in_background(self) -> None:
        """For callers in an event loop: a due version check (or reload) runs in a thread of its own, one at a
        time; meanwhile calls are priced from the rows as they are."""
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def run() -> None:
            try:
                self._refresh()
            finally:
                self._refreshing = False

        run_in_background("costs-price-refresh", run)

    def _reload(self) -> None:
        from costs.models import Price

        generation = self._generation
        version = cache.get(VERSION_KEY)
        rows = [
            PriceRow(
                id=p.id,
                provider=p.provider,
                model=p.model,
                input_per_million=p.input_per_million,
                output_per_million=p.output_per_million,
                cached_input_per_million=p.cached_input_per_million,
                reasoning_per_million=p.reasoning_per_million,
                per_request=p.per_request,
                currency=p.currency,
                effective_from=p.effective_from,
                cache_write_per_million=p.cache_write_per_million,
                bills_failed_requests=p.bills_failed_requests,
            )
            for p in Price.objects.all()
        ]
        with self._lock:
            if generation != self._generation:
                return  # invalidated while this was loading: what was read may be older than the change
            self._data, self._version = (rows, {}), version
            self._loaded_at = self._checked_at = time.monotonic()

    def price_for(self, *, provider: str, model: str, at: datetime, refresh: bool = True) -> PriceRow | None:
        if refresh and not in_event_loop():
            self._refresh()
        return self.lookup(provider=provider, model=model, at=at)

    def lookup(self, *, provider: str, model: str, at: datetime) -> PriceRow | None:
        """The matching row from the cache as it is (never a query; None when not loaded or nothing matches)."""
        data = self._data
        if data is None:
            return None
        rows, memo = data
        key = (provider, model)
        timeline = memo.get(key, _MISSING)
        if timeline is _MISSING:
            timeline = price_timeline(rows, provider=provider, model=model)
            if len(memo) >= MEMO_MAX:
                memo.clear()
            memo[key] = timeline
        starts, picks = timeline
        index = bisect_right(starts, at)
        return picks[index - 1] if index else None


price_cache = PriceCache()
os.register_at_fork(after_in_child=_after_fork)


def price_usage(
    *,
    provider: str,
    model: str,
    at: datetime,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    reasoning_tokens: int,
    cache_write_tokens: int = 0,
    failed: bool = False,
) -> Decimal | None:
    """The hub's `Pricer` (registered in `CostsConfig.ready()`): what a call with this usage cost at `at`, from the
    cache (reloaded first when stale, outside an event loop); None when no price matches."""
    price = price_cache.price_for(provider=provider, model=model, at=at)
    if price is None:
        return None
    tokens = Tokens(input_tokens, output_tokens, cached_tokens, reasoning_tokens, cache_write_tokens)
    return compute_cost(price, tokens, failed=failed)


def bump_price_version() -> None:
    """Tell every process that the price table changed (their caches reload within about a second)."""
    cache.set(VERSION_KEY, time.time_ns(), timeout=None)
    price_cache.invalidate()
