"""The process's shared event loop: async work started from sync code reuses one loop, and its thread-sensitive
database work still runs in the calling thread (with that thread's connection)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from asgiref.sync import sync_to_async

from agent_platform.worker_loop import call_async, worker_loop


async def where_it_ran() -> tuple[asyncio.AbstractEventLoop, int]:
    loop = asyncio.get_running_loop()
    sync_thread = await sync_to_async(threading.get_ident)()
    return loop, sync_thread


def test_calls_from_sync_code_share_one_loop_and_keep_sync_work_in_the_caller():
    first_loop, first_sync_thread = call_async(where_it_ran)
    second_loop, _ = call_async(where_it_ran)
    assert first_loop is second_loop is worker_loop()
    assert first_sync_thread == threading.get_ident()


def test_calls_from_several_threads_at_once_each_keep_their_own_sync_thread():
    seen: dict[int, int] = {}
    all_running = threading.Barrier(4)

    async def overlapping() -> tuple[asyncio.AbstractEventLoop, int]:
        await asyncio.to_thread(all_running.wait, 10)  # the four calls are on the loop at the same time
        return await where_it_ran()

    def caller() -> None:
        _loop, sync_thread = call_async(overlapping)
        seen[threading.get_ident()] = sync_thread

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 4 and all(caller_id == sync_id for caller_id, sync_id in seen.items())


def test_an_error_reaches_the_caller():
    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        call_async(fails)


def test_a_stale_loop_left_recorded_by_asgiref_is_not_used():
    from asgiref.sync import SyncToAsync

    stale = asyncio.new_event_loop()
    stale.close()
    SyncToAsync.threadlocal.main_event_loop = stale  # what an earlier sync_to_async call in this thread leaves
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    try:
        loop, _ = call_async(where_it_ran)
        assert loop is worker_loop()
        assert SyncToAsync.threadlocal.main_event_loop is stale  # left as found
    finally:
        SyncToAsync.threadlocal.main_event_loop = None
