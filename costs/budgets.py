"""An in-process index of active budgets, so that calls no budget applies to pay nothing on the hot path.

Before each call the index compares its version with the budgets' version stamp in the shared cache (one GET;
`bump_budget_version` sets it when a budget is saved or deleted) and reloads from the database when they differ, so
a budget changed in any process applies to the next call of every process. While the cache is unreachable the
index reloads at most every `BUDGET_INDEX_OUTAGE_POLL` seconds instead; it also reloads every `BUDGET_INDEX_TTL`
seconds whatever the stamp says. Never inside an event loop: async callers await `arefresh`, which runs the same
check in a worker thread, shared by the calls of one loop that arrive while a check is under way (each call waits for
a check that started after it arrived, so none can miss a change made before it).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass

from agent_platform.cache_safe import cache_available
from agent_platform.cache_safe import safe_cache as cache  # a cache outage reads as a miss
from agent_platform.observability.context import Caller

BUDGET_INDEX_TTL = 10.0  # a backstop for a change that bumped no stamp
BUDGET_INDEX_OUTAGE_POLL = 1.0
VERSION_KEY = "costs:budgets:version"
_UNKNOWN = object()  # loaded while the cache was down: the first stamp read after it answers again reloads


class _LoopChecks:
    """The stamp checks of one event loop: the one running in a worker thread, and the one queued behind it that
    every call arriving meanwhile shares."""

    def __init__(self) -> None:
        self.running: asyncio.Future[None] | None = None
        self.queued: asyncio.Future[None] | None = None


@dataclass(frozen=True)
class BudgetEntry:
    id: int
    scope: str
    scope_id: int
    hard: bool


def caller_scopes(caller: Caller) -> set[tuple[str, int]]:
    scopes = set()
    for scope, value in (
        ("user", caller.user_id),
        ("api_key", caller.api_key_id),
        ("agent", caller.agent_id),
        ("team", caller.team_id),
    ):
        if value is not None:
            scopes.add((scope, int(value)))
    return scopes


class BudgetIndex:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], list[BudgetEntry]] | None = None
        self._any_hard = False
        self._loaded_at = 0.0
        self._version: object = None
        self._generation = 0
        self._lock = threading.Lock()
        self._loop_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopChecks] = (
            weakref.WeakKeyDictionary()
        )

    def invalidate(self) -> None:
        with self._lock:
            self._entries = None
            self._generation += 1

    @property
    def loaded(self) -> bool:
        return self._entries is not None

    def refresh(self, *, force: bool = False) -> None:
        """Reload when another process changed a budget (the version stamp differs), when the cache is down and the
        index is older than the outage poll, or when it is older than the TTL. One cache GET."""
        version = self._read_version()
        if not force and self._entries is not None and not self._stale(version):
            return
        self._load(version)
        if self._entries is None:  # invalidated meanwhile: read again
            self._load(self._read_version())

    async def arefresh(self) -> None:
        """`refresh()` for callers in an event loop, off the loop. Shared because a hop per call queues on the
        default executor: with 16 calls in flight, p50 2.8-3.8 ms per call vs 0.5-0.8 ms shared (Redis, 2-core box;
        sequential calls cost the same ~0.2 ms either way; see bench/budget_check.py)."""
        loop = asyncio.get_running_loop()
        checks = self._loop_checks.get(loop)
        if checks is None:
            checks = self._loop_checks.setdefault(loop, _LoopChecks())
        waiter = checks.queued
        if waiter is None:
            waiter = checks.queued = loop.create_future()
            if checks.running is None:
                self._start_check(loop, checks)
        await asyncio.shield(waiter)

    def forget_checks(self) -> None:
        """A forked child has no checks in flight (their loops and threads stayed in the parent)."""
        self._loop_checks = weakref.WeakKeyDictionary()

    def _start_check(self, loop: asyncio.AbstractEventLoop, checks: _LoopChecks) -> None:
        waiter, checks.queued = checks.queued, None
        checks.running = waiter

        def finished(job: asyncio.Future[None]) -> None:
            checks.running = None
            if waiter is not None and not waiter.done():
                if job.cancelled():
                    waiter.cancel()
                elif (error := job.exception()) is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(None)
            if checks.queued is not None:
                self._start_check(loop, checks)

        loop.run_in_executor(None, self._refresh_and_close).add_done_callback(finished)

    def _refresh_and_close(self) -> None:
        """`refresh()` on an executor thread, which gives its database connection back afterwards: a thread of the
        loop's executor lives on, and a connection it kept would hold one of the process's pool slots for good."""
        from django.db import close_old_connections

        try:
            self.refresh()
        finally:
            close_old_connections()

    @staticmethod
    def _read_version() -> object:
        version = cache.get(VERSION_KEY)
        return version if cache_available() else _UNKNOWN

    def _stale(self, version: object) -> bool:
        age = time.monotonic() - self._loaded_at
        if age > BUDGET_INDEX_TTL:
            return True
        if version is _UNKNOWN:  # the cache is down: nobody can tell us about a change, so look ourselves
            return age > BUDGET_INDEX_OUTAGE_POLL
        return version != self._version

    def _load(self, version: object) -> None:
        """Read the budgets; `version` is the stamp read before them (a change after the read bumps it again)."""
        from costs.models import Budget

        generation = self._generation
        entries: dict[tuple[str, int], list[BudgetEntry]] = {}
        any_hard = False
        for b in Budget.objects.filter(is_active=True).values("id", "scope", "scope_id", "enforcement"):
            entry = BudgetEntry(
                id=b["id"], scope=b["scope"], scope_id=b["scope_id"], hard=b["enforcement"] == Budget.Enforcement.HARD
            )
            entries.setdefault((entry.scope, entry.scope_id), []).append(entry)
            any_hard = any_hard or entry.hard
        with self._lock:
            if generation != self._generation:
                return  # invalidated while this was loading: what was read may be older than the change
            self._entries, self._any_hard, self._version = entries, any_hard, version
            self._loaded_at = time.monotonic()

    def matching(self, caller: Caller, *, hard_only: bool = False) -> list[BudgetEntry]:
        entries = self._entries or {}
        if hard_only and not self._any_hard:
            return []
        found = [e for scope in caller_scopes(caller) for e in entries.get(scope, ())]
        return [e for e in found if e.hard] if hard_only else found

    @property
    def any_hard(self) -> bool:
        return self._any_hard


budget_index = BudgetIndex()


def bump_budget_version() -> None:
    """Tell every process that the budgets changed: their next call reloads the index."""
    cache.set(VERSION_KEY, time.time_ns(), timeout=None)
    budget_index.invalidate()
