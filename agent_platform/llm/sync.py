"""Run the async call path from sync code (Django views, management commands, Celery tasks).

One long-lived event loop per process runs in a daemon thread; sync callers submit coroutines to it and wait.
That keeps litellm's pooled HTTP clients valid (they belong to one loop), costs no loop start-up per call, and
works identically in a Celery worker (a forked child starts its own loop). The caller's contextvars (trace,
caller, request id) travel with the coroutine.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _pid
    loop = _loop
    if loop is not None and _pid == os.getpid() and _thread is not None and _thread.is_alive():
        return loop
    with _lock:
        if _loop is None or _pid != os.getpid() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="llm-sync-loop", daemon=True)
            thread.start()
            ready.wait(5)
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = _get_loop()
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
