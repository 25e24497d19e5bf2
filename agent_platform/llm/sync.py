"""Run the async call path from sync code (Django views, management commands, Celery tasks).

The process's long-lived event loop (`agent_platform.worker_loop`) runs in a daemon thread; sync callers submit
coroutines to it and wait. That keeps litellm's pooled HTTP clients valid (they belong to one loop), costs no loop
start-up per call, and works identically in a Celery worker (a forked child starts its own loop). The caller's
contextvars (trace, caller, request id) travel with the coroutine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from agent_platform.worker_loop import worker_loop

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = worker_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError("complete() was called on the LLM layer's own loop; await acomplete() instead.")
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)  # copies the caller's contextvars
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
