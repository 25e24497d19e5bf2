"""Executing a run in a worker (or in-process): claim it, stream the orchestrator's events, store the outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from agent_platform.api.errors import PlatformError
from agent_platform.worker_loop import call_async
from agents.models import Run, RunStatus
from agents.orchestrator import AgentSpec, Orchestrator
from agents.rendering import render_markdown
from agents.services.conversations import conversation_context
from agents.services.events import EventCallback, EventMasker, EventSink, event_dict
from agents.services.lifecycle import ATTEMPT_SEQ_STRIDE, run_claim, run_finish, run_heartbeat
from agents.services.specs import agent_spec_build, spec_loader

logger = logging.getLogger("agents.runs")


TERMINAL_EVENTS = ("final", "error")


def _claim_and_prepare(run_id) -> tuple[Run | None, AgentSpec | None, tuple[list, list], PlatformError | None]:
    """One trip to the database thread: claim the run, then build its spec and context (or the reason it cannot)."""
    run = run_claim(run_id=run_id)
    if run is None:
        return None, None, ([], []), None
    try:
        if not run.agent.enabled:  # disabled while the run was queued
            raise PlatformError(f"Agent {run.agent.slug!r} is disabled.", code="AGENT_DISABLED", field="agent")
        spec = agent_spec_build(agent=run.agent, question=run.input, user_id=run.user_id)
        context = conversation_context(run=run, spec=spec, agent=run.agent)
        return run, spec, context, None
    except PlatformError as exc:
        return run, None, ([], []), exc


async def run_execute_async(run_id, *, on_event: EventCallback | None = None) -> Run | None:
    """Execute a queued run: claim it, stream the orchestrator's events, store the outcome. Idempotent."""
    began = time.perf_counter()
    sink = EventSink(run_id=str(run_id), on_event=on_event)
    run, spec, (messages, dropped), problem = await sync_to_async(_claim_and_prepare)(run_id)
    prepared = time.perf_counter()
    if run is None:
        logger.info("run %s is not queued; nothing to do", run_id)
        return None
    rid = sink.run_id = str(run.id)
    seq_start = (run.attempts - 1) * ATTEMPT_SEQ_STRIDE + 1
    if problem is not None or spec is None:
        exc = problem or PlatformError("The agent could not be prepared.", code="AGENT_EXECUTION_FAILED")
        spec, messages = AgentSpec(slug=run.agent.slug, model_endpoint=run.agent.model_endpoint), []
        orchestrator = Orchestrator(spec, messages, run_id=rid, trace_id=run.trace_id, seq_start=seq_start)
        orchestrator.error = exc
        event = {
            "run_id": rid,
            "seq": seq_start,
            "type": "error",
            "data": {"code": exc.code, "message": exc.message, "details": exc.details, "trace_id": run.trace_id},
        }
        finished = await sync_to_async(run_finish)(run=run, orchestrator=orchestrator, events=[event])
        await sink.publish(event)
        return finished

    orchestrator = Orchestrator(
        spec,
        messages,
        run_id=rid,
        conversation_id=str(run.conversation_id) if run.conversation_id else None,
        user_id=run.user_id,
        trace_id=run.trace_id,
        agent_loader=spec_loader(run.user_id),
        seq_start=seq_start,
        summarize=dropped or None,
    )
    terminal: dict[str, Any] | None = None
    first_token: float | None = None
    masker = EventMasker() if spec.pii_mask else None

    async def consume() -> None:
        nonlocal terminal, first_token
        async for event in orchestrator.events():
            if first_token is None and event.type == "token":
                first_token = time.perf_counter()
            data = event_dict(rid, event)
            for ready in masker.events(data) if masker else (data,):
                if ready["type"] in TERMINAL_EVENTS:
                    if ready["type"] == "final":
                        ready["data"]["html"] = render_markdown(ready["data"]["output"])
                    terminal = ready
                    continue
                await sink.add(ready)

    heartbeat_every = float(settings.AGENT_RUN_HEARTBEAT_SECONDS)
    task = asyncio.create_task(consume())
    cancelled = False
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=heartbeat_every)
        if done:
            break
        if not await sync_to_async(run_heartbeat)(run_id=rid):
            cancelled = True
            task.cancel()
            break
    try:
        await task
    except asyncio.CancelledError:
        if not cancelled:
            raise
    if cancelled:
        for held in masker.release() if masker else ():
            await sink.add(held)
        terminal = {
            "run_id": rid,
            "seq": orchestrator._seq + 1,
            "type": "error",
            "data": {"code": "RUN_CANCELLED", "message": "The run was cancelled.", **orchestrator.totals.as_dict()},
        }
    assert terminal is not None
    if terminal["type"] == "final" or cancelled:
        terminal["data"]["status"] = RunStatus.CANCELLED.value if cancelled else RunStatus.SUCCEEDED.value
    finished = await sync_to_async(run_finish)(
        run=run, orchestrator=orchestrator, events=[*sink.pending, terminal], cancelled=cancelled
    )
    sink.pending = []
    if terminal["type"] == "final" or cancelled:
        terminal["data"]["status"] = finished.status
    # where the time went, for operators and benchmarks (server-side, in ms)
    terminal["data"]["timings_ms"] = {
        "queued": round((run.started_at - run.created_at).total_seconds() * 1000, 1) if run.started_at else None,
        "prepare": round((prepared - began) * 1000, 1),
        "first_token": round((first_token - began) * 1000, 1) if first_token else None,
        "total": round((time.perf_counter() - began) * 1000, 1),
    }
    await sink.publish(terminal)
    return finished


def run_execute(*, run_id) -> Run | None:
    """Sync entry point (Celery task, eager or worker), on the process's shared event loop: the model's HTTP
    connection and the channel layer's Redis connection stay open from one run to the next."""
    return call_async(run_execute_async, run_id)
