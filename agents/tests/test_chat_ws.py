"""The chat websocket: in-process runs on the embedded default, and a real Celery worker relaying through Redis."""

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from agents.models import Run, RunEvent, RunStatus
from agents.routing import websocket_urlpatterns
from agents.services.events import EventSink


def communicator_for(user, slug="helper"):
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/chat/{slug}/")
    communicator.scope["user"] = user
    return communicator


async def receive_run(communicator, timeout=30):
    """Messages until the run's terminal event: (run message, [events])."""
    run_message = None
    events = []
    deadline = time.monotonic() + timeout
    while True:
        message = await communicator.receive_json_from(timeout=max(deadline - time.monotonic(), 0.1))
        if message["type"] == "run":
            run_message = message
        elif message["type"] in ("event", "events"):  # one event, or several a busy worker sent together
            events.extend(message["events"] if message["type"] == "events" else [message["event"]])
            if events[-1]["type"] in ("final", "error"):
                return run_message, events
        elif message["type"] == "error":
            return message, events


def assert_in_order_without_gaps(events):
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert events[0]["type"] == "run_started"


@pytest.mark.parametrize("transport", ["in-process", pytest.param("worker", marks=pytest.mark.worker)])
@pytest.mark.django_db(transaction=True)
async def test_chat_streams_tokens_tools_and_the_final_answer(make_agent, scripted, user, settings, request, transport):
    """The embedded default's in-process transport, and (full stack) a real worker relaying through Redis."""
    if transport == "worker":
        request.getfixturevalue("celery_worker")
    else:
        settings.CELERY_TASK_ALWAYS_EAGER = True
    await sync_to_async(make_agent)()
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "7*6"}}])
    scripted.queue_response(content="It is **42**. <script>x</script>")
    communicator = communicator_for(user)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "message", "text": "7*6?"})
    run_message, events = await receive_run(communicator)
    assert_in_order_without_gaps(events)
    types = [e["type"] for e in events]
    assert "tool_call" in types and "tool_result" in types and types.count("token") > 1
    final = events[-1]
    assert final["type"] == "final" and final["data"]["status"] == "succeeded"
    assert final["data"]["html"].startswith("<p>It is <strong>42</strong>.") and "<script>" not in final["data"]["html"]
    assert final["data"]["total_tokens"] > 0 and final["data"]["trace_id"] == run_message["trace_id"]

    # a client that missed events fetches them by sequence number
    await communicator.send_json_to({"type": "resume", "run_id": run_message["run_id"], "after_seq": 2})
    replayed = [await communicator.receive_json_from() for _ in range(len(events) - 2)]
    assert [m["event"]["seq"] for m in replayed] == [e["seq"] for e in events[2:]]

    # the next message continues the same conversation
    scripted.queue_response(content="Still 42.")
    await communicator.send_json_to(
        {"type": "message", "text": "sure?", "conversation_id": run_message["conversation_id"]}
    )
    second, _ = await receive_run(communicator)
    assert second["conversation_id"] == run_message["conversation_id"]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_sockets_are_refused(make_agent):
    from django.contrib.auth.models import AnonymousUser

    await sync_to_async(make_agent)()
    connected, code = await communicator_for(AnonymousUser()).connect()
    assert not connected and code == 4401


@pytest.mark.django_db(transaction=True)
async def test_unknown_agent_and_bad_messages(make_agent, user):
    connected, code = await communicator_for(user, slug="nobody").connect()
    assert not connected and code == 4404
    await sync_to_async(make_agent)()
    communicator = communicator_for(user)
    await communicator.connect()
    await communicator.send_json_to({"type": "dance"})
    assert (await communicator.receive_json_from())["error"]["code"] == "VALIDATION_ERROR"
    await communicator.send_json_to({"type": "message", "text": "  "})
    error = (await communicator.receive_json_from())["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == "text"
    await communicator.send_json_to({"type": "resume", "run_id": "00000000-0000-0000-0000-000000000000"})
    assert (await communicator.receive_json_from())["error"]["code"] == "RUN_NOT_FOUND"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_agent_disabled_or_deleted_after_the_socket_connected_takes_no_message(make_agent, user):
    from agents.models import AgentDefinition

    agent = await sync_to_async(make_agent)()
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await AgentDefinition.objects.filter(id=agent.id).aupdate(enabled=False)
    await communicator.send_json_to({"type": "message", "text": "hello"})
    assert (await communicator.receive_json_from())["error"]["code"] == "AGENT_DISABLED"
    await AgentDefinition.objects.filter(id=agent.id).adelete()
    await communicator.send_json_to({"type": "message", "text": "hello"})
    assert (await communicator.receive_json_from())["error"]["code"] == "AGENT_NOT_FOUND"
    assert not await Run.objects.aexists()
    await communicator.disconnect()


# --- full stack: a real Celery worker on Redis, events relayed through channels-redis ------------------------


def _fake_agent(fake_openai, **overrides):
    from agents.services import agent_create
    from tests.support.fixtures import create_endpoint_for_fake_server

    # a fresh endpoint name: a worker process caches endpoints by name for a few seconds
    name = f"fake-{uuid.uuid4().hex[:8]}"
    create_endpoint_for_fake_server(fake_openai, name=name)
    data = {"slug": "helper", "name": "Helper", "model_endpoint": name, "system_prompt_text": "Be brief."}
    data.update(overrides)
    return agent_create(data=data)


ANSWER = " ".join(f"word{i}" for i in range(60))


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
async def test_a_worker_runs_the_agent_and_its_events_reach_the_socket_in_order(celery_worker, fake_openai, user):
    fake_openai.token_delay = 0.002
    await sync_to_async(_fake_agent)(fake_openai)
    fake_openai.enqueue(content=ANSWER)
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "message", "text": "talk to me"})
    run_message, events = await receive_run(communicator, timeout=60)
    assert events, run_message
    assert_in_order_without_gaps(events)
    assert events[-1]["type"] == "final", events[-1]
    assert "".join(e["data"]["text"] for e in events if e["type"] == "token") == ANSWER
    run = await Run.objects.aget(id=run_message["run_id"])
    assert run.status == RunStatus.SUCCEEDED and run.output == ANSWER and run.celery_task_id
    stored = [e async for e in RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)]
    assert stored == [e["seq"] for e in events]
    await communicator.disconnect()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_mid_run_is_requeued_and_completes_once(celery_worker, fake_openai, user):
    from agents import services

    fake_openai.token_delay = 0.05  # a slow stream: ~100 tokens over ~5 s
    agent = _fake_agent(fake_openai)
    fake_openai.enqueue(content=" ".join(f"tok{i}" for i in range(100)))
    run = services.run_start(agent=agent, input="a long answer please", user=user)

    deadline = time.monotonic() + 30
    while not RunEvent.objects.filter(run=run, type="token").exists():
        if time.monotonic() > deadline:
            run.refresh_from_db()
            why = f"{run.status} {run.error_code} {run.error_message}"
            pytest.fail(f"the worker never streamed: {why}\n{celery_worker.log()}")
        time.sleep(0.05)
    celery_worker.kill()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1

    celery_worker.start()  # a new worker process comes up
    fake_openai.enqueue(content="the short retried answer")
    time.sleep(1.2)
    report = services.runs_reap_stale(stale_after=timedelta(seconds=1))
    assert report == {"requeued": 1, "failed": 0}
    deadline = time.monotonic() + 60
    while True:
        run.refresh_from_db()
        if run.is_finished or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert run.status == RunStatus.SUCCEEDED, (run.status, run.error_code, run.error_message, celery_worker.log())
    assert run.attempts == 2 and run.output == "the short retried answer"
    assert run.llm_calls == 1  # the run's totals count the attempt that finished, once
    assert services.run_execute(run_id=run.id) is None  # a late redelivery of the first task changes nothing
    run.refresh_from_db()
    assert run.llm_calls == 1 and run.attempts == 2
    assert RunEvent.objects.filter(run=run, type="final").count() == 1


class _SlowLayer(InMemoryChannelLayer):
    """A channel layer whose sends wait until the test lets them through: a worker whose relay is busy."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.open = asyncio.Event()
        self.sent = []

    async def group_send(self, group, message):
        self.sent.append(message)
        await self.open.wait()
        await super().group_send(group, message)


async def test_events_made_while_a_send_is_in_flight_leave_together_and_in_order(monkeypatch):

    layer = _SlowLayer()
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda *args: layer)
    sink = EventSink(run_id=str(uuid.uuid4()), on_event=None)
    events = [{"run_id": sink.run_id, "seq": seq, "type": "token", "data": {"text": f"t{seq}"}} for seq in (1, 2, 3)]
    await sink.add(events[0])
    await asyncio.sleep(0)  # the first event leaves at once, alone; its send is now in flight
    await sink.add(events[1])
    await sink.add(events[2])
    layer.open.set()
    final = {"run_id": sink.run_id, "seq": 4, "type": "final", "data": {}}
    await sink.publish(final)  # the last event waits for the ones before it
    assert layer.sent == [
        {"type": "run.event", "event": events[0]},
        {"type": "run.events", "events": events[1:]},
        {"type": "run.event", "event": final},
    ]


@pytest.mark.django_db(transaction=True)
async def test_events_sent_together_reach_the_socket_as_one_frame(make_agent, user, settings):
    from agents import services

    settings.CELERY_TASK_ALWAYS_EAGER = False  # events come through the channel layer, as from a worker
    agent = await sync_to_async(make_agent)()
    run = await sync_to_async(services.run_create)(agent=agent, input="hi", user=user)
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "resume", "run_id": str(run.id), "after_seq": 0})  # joins the run
    await asyncio.sleep(0.2)
    rid = str(run.id)
    together = [
        {"run_id": rid, "seq": 1, "type": "token", "data": {"text": "Hel"}},
        {"run_id": rid, "seq": 2, "type": "token", "data": {"text": "lo"}},
        {"run_id": rid, "seq": 3, "type": "final", "data": {"status": "succeeded"}},
    ]
    await get_channel_layer().group_send(services.run_group(rid), {"type": "run.events", "events": together})
    assert await communicator.receive_json_from(timeout=10) == {"type": "events", "events": together}
    # the run has ended for this socket: it has left the run's group
    await get_channel_layer().group_send(services.run_group(rid), {"type": "run.event", "event": together[0]})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
