"""A running run's events on their way out: published at once (socket or channel layer), stored in batches, masked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from agent_platform.security.pii import StreamMasker, mask_for_storage
from agent_platform.worker_loop import call_async
from agents.models import RunEvent
from agents.orchestrator import AgentEvent
from agents.services.commit import async_commit

logger = logging.getLogger("agents.runs")


EVENT_FLUSH_EVERY = 50
EVENT_FLUSH_SECONDS = 0.25


def run_group(run_id: Any) -> str:
    """The channel-layer group a run's events are published to."""
    return f"run.{run_id}"


EventCallback = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class EventSink:
    """Publishes each event at once (to the socket or the channel layer) and stores them in batches.

    To the channel layer, one send is in flight per run: events that arrive meanwhile leave together in the next
    message ("run.events"). An idle stream sends each event alone, as soon as it exists; a busy worker sends fewer,
    larger messages instead of falling behind one round trip per token."""

    run_id: str
    on_event: EventCallback | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    publish_failures: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sender: asyncio.Task | None = None

    async def publish(self, event: dict[str, Any]) -> None:
        """Send one event now, after any still on their way."""
        if self.on_event is not None:
            await self.on_event(event)
            return
        await self.drain()
        await self._group_send([event])

    async def add(self, event: dict[str, Any]) -> None:
        self.pending.append(event)
        if self.on_event is not None:
            await self.on_event(event)
        else:
            self.outbox.append(event)
            if self.sender is None or self.sender.done():
                self.sender = asyncio.create_task(self._send_outbox())
        if len(self.pending) >= EVENT_FLUSH_EVERY or time.monotonic() - self.last_flush >= EVENT_FLUSH_SECONDS:
            await self.flush()

    async def drain(self) -> None:
        if self.sender is not None:
            await self.sender

    async def _send_outbox(self) -> None:
        while self.outbox:
            batch, self.outbox = self.outbox, []
            await self._group_send(batch)

    async def _group_send(self, events: list[dict[str, Any]]) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        message: dict[str, Any]
        if len(events) == 1:
            message = {"type": "run.event", "event": events[0]}
        else:
            message = {"type": "run.events", "events": events}
        try:
            await layer.group_send(run_group(self.run_id), message)
        except Exception:  # the run goes on: its events are stored, clients fetch them by sequence number
            self.publish_failures += 1
            if self.publish_failures == 1:
                logger.warning("run %s: publishing events failed", self.run_id, exc_info=True)

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if batch:
            await sync_to_async(events_store_streamed)(self.run_id, batch)


class EventMasker:
    """A masking agent's events as they are shown and stored: PII masked in every event's data. Token text goes
    through one StreamMasker, and the newest token event waits for the next event, which is when what the masker
    still holds joins it; joined, the tokens read as the masked answer."""

    def __init__(self) -> None:
        self.stream = StreamMasker()
        self.held: dict[str, Any] | None = None

    def events(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to send on, in order, now that `event` has come."""
        if event["type"] == "token":
            event["data"] = {**event["data"], "text": self.stream.feed(event["data"].get("text") or "")}
            ready, self.held = self.release(), event
            return ready
        event["data"] = mask_for_storage(event["data"])
        return [*self.release(), event]

    def release(self) -> list[dict[str, Any]]:
        """The held token event, with the rest of the stream."""
        held, self.held = self.held, None
        if held is None:
            return []
        held["data"]["text"] += self.stream.flush()
        return [held]


def event_dict(run_id: str, event: AgentEvent) -> dict[str, Any]:
    return {"run_id": run_id, "seq": event.seq, "type": event.type, "data": event.data}


def events_store_streamed(run_id, events: list[dict[str, Any]]) -> None:
    """A batch of a running run's events (asynchronous commit: they are also published as they happen)."""
    with transaction.atomic():
        async_commit()
        events_store(run_id, events)


def events_store(run_id, events: list[dict[str, Any]]) -> None:
    if events:
        RunEvent.objects.bulk_create(
            [RunEvent(run_id=run_id, seq=e["seq"], type=e["type"], data=e["data"]) for e in events],
            ignore_conflicts=True,
        )


def event_publish_sync(run_id, event: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        try:
            call_async(
                layer.group_send, run_group(run_id), {"type": "run.event", "event": {"run_id": str(run_id), **event}}
            )
        except Exception:
            logger.warning("could not publish an event of run %s", run_id, exc_info=True)
