"""One long-lived asyncio event loop per process, for async code that sync code starts (Celery tasks, the LLM
layer's sync wrappers).

`asgiref.async_to_sync` called from a plain thread makes a new thread and a new event loop for every call, so every
task would open new connections: the model's HTTP connection, the channel layer's Redis pool. `call_async` runs the
coroutine on this process's shared loop instead, so those stay warm across tasks. Thread-sensitive `sync_to_async`
work (Django ORM) still runs in the calling thread, with that thread's database connection, exactly as under
`async_to_sync`: the calling thread serves it while it waits.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def worker_loop() -> asyncio.AbstractEventLoop:
    """This process's shared loop, started on first use (after a fork, the child starts its own). The LLM layer's
    sync wrappers (`agent_platform.llm.sync`) use it too: one loop, one pool of HTTP clients per process."""
    global _loop, _thread, _pid
    loop = _loop
    if loop is not None and _pid == os.getpid() and _thread is not None and _thread.is_alive():
        return loop
    with _lock:
        if _loop is None or _pid != os.getpid() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="worker-event-loop", daemon=True)
            thread.start()
            ready.wait(5)
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def call_async(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """`async_to_sync(fn)(*args, **kwargs)` on the shared loop.

    asgiref schedules onto a running "main" loop when the calling thread has one recorded (as it does inside
    `sync_to_async`); this records the shared loop for the duration of the call. Inside an existing async context
    (e.g. a sync view under daphne) the caller's own main loop, still running, is kept; a stale record (asgiref
    never clears it) is not."""
    local = SyncToAsync.threadlocal
    previous = (getattr(local, "main_event_loop", None), getattr(local, "main_event_loop_pid", None))
    if previous[0] is not None and previous[1] == os.getpid() and previous[0].is_running():
        return async_to_sync(fn)(*args, **kwargs)
    local.main_event_loop, local.main_event_loop_pid = worker_loop(), os.getpid()
    try:
        return async_to_sync(fn)(*args, **kwargs)
    finally:
        local.main_event_loop, local.main_event_loop_pid = previous
