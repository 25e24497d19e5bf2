"""A bounded, thread-safe in-memory buffer whose items are written in batches.

`add()` is cheap (a lock and an append) and never touches the database, except that a full buffer is flushed at
once. `flush()` writes synchronously in the calling thread, or — when the calling thread runs an event loop, where
the ORM must not be used — hands the batch to a single background writer thread. A failed write puts the items
back (bounded by `hard_cap`: the oldest are dropped, with a log line, rather than letting memory grow).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Generic, TypeVar

logger = logging.getLogger("agent_platform.observability.buffer")
T = TypeVar("T")
_process = [os.getpid()]  # this process's id, kept current across forks (no system call on the hot path)
# SQLite (the embedded default's in-memory or file database) takes one writer at a time and fails a second one at
# once ("database table is locked") instead of waiting: batch writes from the buffers' threads take turns there.
_sqlite_writes = threading.RLock()


def _after_fork() -> None:
    global _sqlite_writes
    _process[0] = os.getpid()
    _sqlite_writes = threading.RLock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork)


def _write_turn():
    from django.db import connection

    return _sqlite_writes if connection.vendor == "sqlite" else nullcontext()


def default_flush_seconds() -> float:
    """How often a background thread writes what has been buffered (`OBSERVER_FLUSH_SECONDS`), so nothing waits
    for a request or task end that never comes (work in a websocket consumer, a long run). 0 turns it off."""
    from django.conf import settings

    return float(settings.OBSERVER_FLUSH_SECONDS)


def in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class BatchBuffer(Generic[T]):
    def __init__(
        self, name: str, writer: Callable[[list[T]], None], *, max_items: int = 1000, hard_cap: int = 100_000
    ) -> None:
        self.name = name
        self.writer = writer
        self.max_items = max_items
        self.hard_cap = hard_cap
        self._items: list[T] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid: int | None = None
        self._pending: list[Future] = []
        self.dropped = 0
        self.flush_seconds = default_flush_seconds()
        self._flusher_pid: int | None = None
        self._periodic_write = threading.Lock()  # held while the periodic flusher writes what it took

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        if self._flusher_pid != _process[0] and self.flush_seconds > 0:
            self._start_flusher()
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= self.max_items
        if full:
            self.flush()

    def take(self) -> list[T]:
        with self._lock:
            items, self._items = self._items, []
        return items

    def flush(self) -> None:
        items = self.take()
        if not items:
            return
        if in_event_loop():
            self._submit(items)
        else:
            self._write(items)

    def _start_flusher(self) -> None:
        """A daemon thread per process (started lazily, so forked workers get their own) flushing periodically."""
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()

        def run() -> None:
            while True:
                threading.Event().wait(self.flush_seconds)
                if self._items:
                    try:
                        with self._periodic_write:
                            items = self.take()
                            if items:
                                self._write_in_thread(items)
                    except Exception:
                        logger.exception("%s: periodic flush failed", self.name)

        threading.Thread(target=run, name=f"{self.name}-flusher", daemon=True).start()

    def _submit(self, items: list[T]) -> None:
        with self._lock:
            if self._executor is None or self._executor_pid != _process[0]:  # none yet, or the parent's (forked)
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-writer")
                self._executor_pid = _process[0]
                self._pending = []
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(self._write_in_thread, items))

    def _write_in_thread(self, items: list[T]) -> None:
        from django.db import close_old_connections

        try:
            self._write(items)
        finally:
            close_old_connections()

    def _write(self, items: list[T]) -> None:
        try:
            with _write_turn():
                self.writer(items)
        except Exception:
            logger.exception(
                "%s: writing %d buffered items failed; keeping them for the next flush", self.name, len(items)
            )
            with self._lock:
                merged = items + self._items
                overflow = len(merged) - self.hard_cap
                if overflow > 0:
                    self.dropped += overflow
                    logger.error("%s: buffer over its cap, dropped the %d oldest items", self.name, overflow)
                    merged = merged[overflow:]
                self._items = merged

    def wait(self, timeout: float | None = 30.0) -> None:
        """Wait for background writes handed off so far."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)

    def settle(self, timeout: float = 30.0) -> bool:
        """Write everything buffered so far and wait for the writes already under way (background batches, a
        periodic flush), so that the caller (a task about to be acknowledged) knows its items are stored. Outside
        an event loop only (inside one it is `flush()`). True when nothing taken so far is left unwritten."""
        if in_event_loop():
            self.flush()  # handed to the writer thread: waiting here would block the loop
            return not self._items
        try:
            self.wait(timeout)
        except Exception:
            logger.exception("%s: a background write did not finish", self.name)
        if self._periodic_write.acquire(timeout=timeout):
            self._periodic_write.release()
        items = self.take()
        if items:
            self._write(items)  # a failure keeps them for the next flush (logged)
        return not self._items

    def drain(self) -> None:
        """Flush everything and wait (shutdown)."""
        try:
            self.wait()
            items = self.take()
            if items:
                self._write(items)
        except Exception:
            logger.exception("%s: draining at exit failed", self.name)
