"""The chat websocket `/ws/chat/<agent_slug>/`.

Client → server (JSON):
    {"type": "message", "text": "...", "conversation_id": "<uuid>"?}   start a run on this agent
    {"type": "resume", "run_id": "<uuid>", "after_seq": 12}             replay stored events after a sequence number
    {"type": "cancel", "run_id": "<uuid>"}
    {"type": "ping"}
A frame that is not JSON text is answered with an error frame (PARSE_ERROR; INPUT_TOO_DEEP for absurd nesting), a
JSON frame that is not one of these with VALIDATION_ERROR; the socket stays open either way.
Server → client:
    {"type": "run", "run_id", "conversation_id", "trace_id"}             the run was created
    {"type": "event", "event": {"run_id", "seq", "type", "data"}}      one event of the run
    {"type": "events", "events": [{...}, ...]}                            consecutive events that came together
    {"type": "error", "error": {"code", "message", "details"}}
    {"type": "pong"}

Runs started here are attributed like a REST call's: to the socket's user, and to its API key and the key's team
when an authentication middleware put one in `scope["api_key"]` (the caller context that REST authentication binds;
it travels into the worker in the task's headers), so the user's budgets apply to chat too.

With a broker, the worker publishes the run's events to the group `run.<run_id>` and this consumer relays them; on
the embedded default the run executes in this process and its events go straight to the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from agent_platform.api.errors import PlatformError, error_body
from agent_platform.observability.context import bind_caller
from agents import selectors, services

logger = logging.getLogger("agents.chat")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

_listening_loops: weakref.WeakSet = weakref.WeakSet()


async def _keep_layer_listening(layer) -> None:
    """channels-redis's pub/sub layer pauses its reader for up to 100 ms whenever the process holds no subscription
    (channels_redis/pubsub.py, `_do_receiving`), so the first socket after a quiet spell could hear its run's first
    events that much late. One idle channel per event loop keeps the reader reading; nothing is ever sent to it."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    loop = asyncio.get_running_loop()
    if isinstance(layer, RedisPubSubChannelLayer) and loop not in _listening_loops:
        _listening_loops.add(loop)
        await layer.new_channel("keepalive.")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        slug = self.scope["url_route"]["kwargs"]["agent_slug"]
        try:
            self.agent = await database_sync_to_async(selectors.agent_get)(slug=slug, user=user)
        except PlatformError:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await _keep_layer_listening(self.channel_layer)
        self.user = user
        api_key = self.scope.get("api_key")
        self.caller = {
            "user_id": user.pk,
            "api_key_id": getattr(api_key, "pk", None),
            "team_id": getattr(api_key, "team_id", None),
        }
        self.closed = False
        self.groups_joined: set[str] = set()
        self.local_runs: set[asyncio.Task] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        self.closed = True
        for group in list(getattr(self, "groups_joined", ())):
            await self.channel_layer.group_discard(group, self.channel_name)
        # In-process runs keep going so their answer is stored; they just stop sending to this socket.

    # --- client messages ---------------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        """Decode the frame; one that is not JSON text gets an error frame instead of closing the socket."""
        try:
            if text_data is None:
                raise PlatformError("Frames must be JSON text, not binary.", code="PARSE_ERROR")
            try:
                content = json.loads(text_data)
            except RecursionError:
                raise PlatformError("The frame's JSON is nested too deeply.", code="INPUT_TOO_DEEP") from None
            except ValueError as exc:
                raise PlatformError(f"The frame is not valid JSON: {exc}.", code="PARSE_ERROR") from None
        except PlatformError as exc:
            await self._send_error(exc)
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "message":
                await self._start(content)
            elif kind == "resume":
                await self._resume(content)
            elif kind == "cancel":
                await self._cancel(content)
            elif kind == "ping":
                await self.send_json({"type": "pong"})
            else:
                raise PlatformError(
                    'type must be one of "message", "resume", "cancel", "ping".', code="VALIDATION_ERROR", field="type"
                )
        except PlatformError as exc:
            await self._send_error(exc)
        except Exception:  # a bug must not close the socket with 1011: the client hears of it and may go on
            logger.exception("chat: handling a %r frame failed", kind)
            await self._send_error(PlatformError("The message could not be handled.", code="INTERNAL_ERROR"))

    async def _send_error(self, exc: PlatformError) -> None:
        await self.send_json({"type": "error", **error_body(code=exc.code, message=exc.message, details=exc.details)})

    def _create_run(self, text: Any, conversation_id: Any, run_id: uuid.UUID | None = None, dispatch: bool = False):
        if not isinstance(text, str) or not text.strip():
            raise PlatformError("text must be a non-empty string.", code="VALIDATION_ERROR", field="text")
        if len(text) > services.MAX_INPUT_CHARS:
            raise PlatformError(
                f"text is {len(text)} characters; the limit is {services.MAX_INPUT_CHARS}.",
                code="VALIDATION_ERROR",
                field="text",
            )
        # what a database cannot store (PostgreSQL refuses NUL in text; a lone surrogate is not UTF-8) is refused here
        if "\x00" in text or not _is_utf8(text):
            raise PlatformError(
                "text must be UTF-8 text without NUL characters.", code="VALIDATION_ERROR", field="text"
            )
        conversation = None
        if conversation_id:
            conversation = selectors.conversation_get(conversation_id=conversation_id, user=self.user)
        # The socket checked that this user may see the agent when it connected; here only whether it still exists
        # and is enabled (one narrow query: this is on the way to the first token).
        self.agent.enabled = selectors.agent_enabled(agent_id=self.agent.id, slug=self.agent.slug)
        return services.run_start(
            agent=self.agent,
            input=text,
            conversation=conversation,
            user=self.user,
            api_key_id=self.caller["api_key_id"],
            run_id=run_id,
            dispatch=dispatch,
        )

    async def _start(self, content: dict) -> None:
        # The caller is bound for the run's creation, its task's headers and (in-process) its execution, which
        # copies this context: traces, cost records and budget checks see who the run is for.
        with bind_caller(**self.caller):
            await self._start_as_caller(content)

    async def _start_as_caller(self, content: dict) -> None:
        # thread_sensitive=False: many sockets starting runs at once do their database work in parallel threads
        create = database_sync_to_async(self._create_run, thread_sensitive=False)
        if settings.CELERY_TASK_ALWAYS_EAGER:
            run = await create(content.get("text"), content.get("conversation_id"))
            await self.send_json(self._ack(run))
            execute = services.run_execute_async(run.id, on_event=self._send_event)
            task = asyncio.create_task(execute)
            self.local_runs.add(task)
            task.add_done_callback(self.local_runs.discard)
            return
        # The run's id is chosen here so that this socket subscribes to its events before the worker can publish
        # any; then one trip to a database thread creates the run and hands it to Celery.
        run_id = uuid.uuid4()
        group = services.run_group(run_id)
        await self._join(group)
        try:
            run = await create(content.get("text"), content.get("conversation_id"), run_id, True)
        except BaseException:
            await self._leave(group)
            raise
        await self.send_json(self._ack(run))  # still before any event: group messages wait until this handler returns

    @staticmethod
    def _ack(run) -> dict:
        return {
            "type": "run",
            "run_id": str(run.id),
            "conversation_id": str(run.conversation_id),
            "trace_id": run.trace_id,
        }

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _leave(self, group: str) -> None:
        if group in self.groups_joined:
            self.groups_joined.discard(group)
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _resume(self, content: dict) -> None:
        after = content.get("after_seq", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise PlatformError("after_seq must be a non-negative integer.", code="VALIDATION_ERROR", field="after_seq")
        run = await database_sync_to_async(selectors.run_get)(run_id=content.get("run_id"), user=self.user)
        if not run.is_finished and not settings.CELERY_TASK_ALWAYS_EAGER:
            await self._join(services.run_group(run.id))
        events = await database_sync_to_async(selectors.run_events_since)(run=run, after_seq=after)
        for event in events:
            await self.send_json({"type": "event", "replay": True, "event": event})

    async def _cancel(self, content: dict) -> None:
        run = await database_sync_to_async(selectors.run_get)(run_id=content.get("run_id"), user=self.user)
        await database_sync_to_async(services.run_cancel)(run=run)

    # --- run events ---------------------------------------------------------------------------------------------
    async def _send_event(self, event: dict) -> None:
        await self._send_frame({"type": "event", "event": event})

    async def _send_frame(self, frame: dict) -> None:
        if self.closed:
            return
        try:
            await self.send_json(frame)
        except Exception:  # the socket went away mid-run; the run goes on and is stored
            self.closed = True

    async def run_event(self, message: dict) -> None:
        """Channel-layer handler for {"type": "run.event", "event": {...}} published by a worker."""
        event = message["event"]
        await self._send_event(event)
        await self._leave_if_finished(event)

    async def run_events(self, message: dict) -> None:
        """Channel-layer handler for {"type": "run.events", "events": [...]}: consecutive events of one run that a
        busy worker sent together; they reach the socket together too, as one frame."""
        events = message["events"]
        await self._send_frame({"type": "events", "events": events})
        await self._leave_if_finished(events[-1])

    async def _leave_if_finished(self, event: dict) -> None:
        if event.get("type") in services.TERMINAL_EVENTS:
            await self._leave(services.run_group(event.get("run_id")))
