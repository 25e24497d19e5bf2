"""The shared cache, failing soft: while it is unreachable a read is a miss and a write is skipped (the database
stays the source of truth), with one warning per outage.

`safe_cache` has the Django cache API (`get`, `set`, `add`, `delete`, `get_many`, `set_many`, `incr`, `aget`,
`aset`) and never raises on a cache fault. `cache_guard(fn, default=...)` wraps any other cache call.
`cache_require(fn)` is for the few writes that must reach the cache (an invalidation other processes rely on): it
raises `ServiceUnavailable` (503 `SERVICE_UNAVAILABLE`, `details.service = "cache"`) instead.

After a fault the cache is not asked again for `CACHE_RETRY_SECONDS` (each call would otherwise wait up to the
socket timeout while Redis is unreachable); then one call tries it, and the first that succeeds ends the outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

logger = logging.getLogger("agent_platform.cache")

T = TypeVar("T")


def _fault_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OSError]
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - redis is a dependency; a cache backend without it raises OSError
        pass
    else:
        # Every RedisError: connection refused or lost, timeouts, loading, read-only replica, out of memory.
        types.append(redis.exceptions.RedisError)
    return tuple(types)


CACHE_FAULTS = _fault_types()


class _Outage:
    """Whether the cache of one alias is known to be down, and when to try it again."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.down_since: float | None = None
        self.retry_at = 0.0
        self._lock = threading.Lock()

    def may_try(self) -> bool:
        return self.down_since is None or time.monotonic() >= self.retry_at

    def failed(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = now
            self.retry_at = now + float(getattr(settings, "CACHE_RETRY_SECONDS", 5))
        if first:
            logger.warning(
                "cache %r unreachable (%s while %s): reads are misses, writes are skipped and throttling is "
                "per process until it answers again",
                self.alias,
                f"{type(exc).__name__}: {exc}",
                what,
            )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            logger.warning("cache %r answers again after %.1f s", self.alias, time.monotonic() - since)


_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()


def _outage(alias: str) -> _Outage:
    outage = _outages.get(alias)
    if outage is None:
        with _outages_lock:
            outage = _outages.setdefault(alias, _Outage(alias))
    return outage


def cache_available(alias: str = "default") -> bool:
    """False while the cache is known to be down and not yet due for another try."""
    return _outage(alias).may_try()


def cache_failed(exc: BaseException, *, what: str, alias: str = "default") -> None:
    """Record a fault seen outside this module (e.g. by a throttle calling the cache itself)."""
    _outage(alias).failed(exc, what)


def cache_succeeded(alias: str = "default") -> None:
    _outage(alias).succeeded()


def reset_outages() -> None:
    """Forget every known outage (tests; a changed CACHES setting)."""
    with _outages_lock:
        _outages.clear()


def cache_guard(fn: Callable[[], T], *, default: T, what: str = "a cache call", alias: str = "default") -> T:
    """fn() (a call to the cache), or `default` when the cache is down or fails."""
    outage = _outage(alias)
    if not outage.may_try():
        return default
    try:
        result = fn()
    except CACHE_FAULTS as exc:
        outage.failed(exc, what)
        return default
    outage.succeeded()
    return result


def cache_require(fn: Callable[[], T], *, what: str = "a cache write", alias: str = "default") -> T:
    """fn() (a cache write other processes rely on); `ServiceUnavailable` (503, service "cache") when the cache is
    down or fails, so the caller's transaction rolls back instead of committing a change nobody is told about."""
    outage = _outage(alias)
    if not outage.may_try():
        raise cache_unavailable(what)
    try:
        result = fn()
    except CACHE_FAULTS as exc:
        outage.failed(exc, what)
        raise cache_unavailable(what) from exc
    outage.succeeded()
    return result


def cache_unavailable(what: str):
    # Imported here: the error module imports DRF's views, whose settings import the throttles, which import this.
    from agent_platform.api.errors import ServiceUnavailable

    return ServiceUnavailable(f"The cache is unavailable ({what}); try again shortly.", service="cache")


class SafeCache:
    """The Django cache of one alias with the same methods, none of which raises on a cache fault."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    @property
    def backend(self):
        return caches[self.alias]

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return cache_guard(
            lambda: self.backend.get(key, default, version=version), default=default, what="get", alias=self.alias
        )

    def get_many(self, keys, version: int | None = None) -> dict[str, Any]:
        return cache_guard(
            lambda: self.backend.get_many(keys, version=version), default={}, what="get_many", alias=self.alias
        )

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        def write() -> bool:
            self.backend.set(key, value, timeout, version=version)
            return True

        return cache_guard(write, default=False, what="set", alias=self.alias)

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list:
        return cache_guard(
            lambda: self.backend.set_many(data, timeout, version=version),
            default=list(data),
            what="set_many",
            alias=self.alias,
        )

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """False when the key exists or the cache is down (callers then read it again, and get a miss)."""
        return cache_guard(
            lambda: self.backend.add(key, value, timeout, version=version), default=False, what="add", alias=self.alias
        )

    def delete(self, key: str, version: int | None = None) -> bool:
        return cache_guard(
            lambda: self.backend.delete(key, version=version), default=False, what="delete", alias=self.alias
        )

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int | None:
        """The new value, or None when the cache is down (ValueError for a missing key, as Django's)."""
        return cache_guard(
            lambda: self.backend.incr(key, delta, version=version), default=None, what="incr", alias=self.alias
        )

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        outage = _outage(self.alias)
        if not outage.may_try():
            return default
        try:
            result = await self.backend.aget(key, default, version=version)
        except CACHE_FAULTS as exc:
            outage.failed(exc, "get")
            return default
        outage.succeeded()
        return result

    async def aset(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        outage = _outage(self.alias)
        if not outage.may_try():
            return False
        try:
            await self.backend.aset(key, value, timeout, version=version)
        except CACHE_FAULTS as exc:
            outage.failed(exc, "set")
            return False
        outage.succeeded()
        return True


safe_cache = SafeCache()
