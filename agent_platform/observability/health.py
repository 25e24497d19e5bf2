"""`/health/` (the process is alive) and `/health/ready/` (database, cache and broker answer)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    # Asks the cache itself even while it is known to be down, and tells the fail-soft layer what it saw.
    from agent_platform.cache_safe import CACHE_FAULTS, cache_failed, cache_succeeded

    key = "health:ready"
    try:
        cache.set(key, "1", timeout=10)
        answer = cache.get(key)
    except CACHE_FAULTS as exc:
        cache_failed(exc, what="the readiness check")
        raise
    cache_succeeded()
    if answer != "1":
        raise RuntimeError("cache did not return what was written")


def _check_broker() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _component_names() -> dict[str, str]:
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 2)[-2]
    broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
    return {"database": connection.vendor, "cache": cache_backend, "broker": broker}


def _checks() -> dict[str, Callable[[], None]]:
    checks = {"database": _check_database, "cache": _check_cache}
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = _check_broker
    return checks


def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readiness(request: HttpRequest) -> JsonResponse:
    names = _component_names()
    results: dict[str, dict] = {}
    failing: list[str] = []
    for component, check in _checks().items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; the reason is reported, not raised
            results[component] = {
                "status": "fail",
                "backend": names[component],
                "error": f"{type(exc).__name__}: {exc}",
            }
            failing.append(f"{component} ({names[component]})")
        else:
            results[component] = {"status": "ok", "backend": names[component]}
        results[component]["ms"] = round((time.perf_counter() - started) * 1000, 2)
    if failing:
        body = {"status": "fail", "message": "Not ready: " + ", ".join(failing) + " unreachable.", "checks": results}
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": results})
