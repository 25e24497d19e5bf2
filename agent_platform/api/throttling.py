"""Throttles backed by the cache (Redis on the full stack, so limits hold across processes).

While the cache is unreachable a throttle counts in this process instead (a fixed window per key at the same rate),
so requests are still limited, per process, rather than refused or let through without limit; once the cache
answers again the shared counters are used again.
"""

from __future__ import annotations

import threading
import time

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from agent_platform.cache_safe import CACHE_FAULTS, cache_available, cache_failed, cache_succeeded

_LOCAL_MAX_KEYS = 10_000


class LocalWindows:
    """Fixed windows per key in this process: (window start, count). Thread-safe; bounded in size."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int, duration: float, now: float | None = None) -> float | None:
        """Count one request; None when it is allowed, else the seconds until the key's window ends."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= duration:
                start, count = now, 0
            if count >= limit:
                return max(duration - (now - start), 0.0)
            if key not in self._windows and len(self._windows) >= _LOCAL_MAX_KEYS:
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < duration}
                if len(self._windows) >= _LOCAL_MAX_KEYS:
                    self._windows.clear()
            self._windows[key] = (start, count + 1)
            return None

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_windows = LocalWindows()


class _FailSafeRateMixin:
    # DRF copies the rates at import time; read them when the throttle is built so settings changes apply.
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        self._local_wait = None
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True  # not this throttle's request (e.g. the anonymous one for a signed-in caller)
        if cache_available():
            try:
                allowed = super().allow_request(request, view)
            except CACHE_FAULTS as exc:
                cache_failed(exc, what=f"throttling ({self.scope})")
            else:
                cache_succeeded()
                return allowed
        self._local_wait = local_windows.hit(key, limit=self.num_requests, duration=self.duration)
        return self._local_wait is None

    def wait(self):
        if self._local_wait is not None:
            return self._local_wait
        return super().wait()


class UserThrottle(_FailSafeRateMixin, UserRateThrottle):
    """Per user; requests made with an API key are counted per key."""

    def get_cache_key(self, request, view):
        key_id = getattr(request, "api_key_id", None)
        if key_id is not None:
            return self.cache_format % {"scope": self.scope, "ident": f"key{key_id}"}
        return super().get_cache_key(request, view)


class AnonThrottle(_FailSafeRateMixin, AnonRateThrottle):
    pass
