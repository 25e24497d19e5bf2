"""An in-process index of active budgets, so that calls no budget applies to pay nothing on the hot path.

Loaded from the database at most every `BUDGET_INDEX_TTL` seconds (sooner when the budgets' version stamp in the
shared cache changes); never inside an event loop: async callers load a cold index through `sync_to_async` and
hand later refreshes to a background thread (`refresh_in_background`), so they never wait for one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from agent_platform.cache_safe import safe_cache as cache  # a cache outage reads as a miss
from agent_platform.observability.context import Caller

BUDGET_INDEX_TTL = 10.0
VERSION_KEY = "costs:budgets:version"


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
        self._checked_at = 0.0
        self._version: object = None
        self._generation = 0
        self._refreshing = False
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        with self._lock:
            self._entries = None
            self._generation += 1

    @property
    def loaded(self) -> bool:
        return self._entries is not None

    def is_fresh(self) -> bool:
        now = time.monotonic()
        return self._entries is not None and now - self._loaded_at <= BUDGET_INDEX_TTL and now - self._checked_at <= 1

    def refresh(self, *, force: bool = False) -> None:
        """Reload when stale or when another process changed a budget (a cheap version check once a second)."""
        now = time.monotonic()
        if not force and self._entries is not None and now - self._loaded_at <= BUDGET_INDEX_TTL:
            if now - self._checked_at <= 1:
                return
            self._checked_at = now
            if cache.get(VERSION_KEY) == self._version:
                return
        self._load()
        if self._entries is None:  # invalidated meanwhile: read again
            self._load()

    def refresh_in_background(self) -> None:
        """For callers in an event loop: a due refresh runs in a thread of its own, one at a time; meanwhile calls
        are checked against the index as it is (a budget changed in another process applies about a second later,
        as with the version check itself; one changed in this process invalidates the index at once)."""
        from costs.pricing import run_in_background

        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def run() -> None:
            try:
                self.refresh()
            finally:
                self._refreshing = False

        run_in_background("costs-budget-refresh", run)

    def _load(self) -> None:
        from costs.models import Budget

        generation = self._generation
        version = cache.get(VERSION_KEY)
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
            self._loaded_at = self._checked_at = time.monotonic()

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
    cache.set(VERSION_KEY, time.time_ns(), timeout=None)
    budget_index.invalidate()
