"""An agent whose policy masks PII stores none: after a masked run, no table holds the raw e-mail, card or IBAN.

Written as the probe that found them in `Run.input`, the conversation's messages, the agent_run span's input and the
stored run events. The run here is built to leak everywhere it could: the user's message carries the PII in the
formats that once slipped past the filter, a tool returns it raw, the model passes a placeholder back to a tool
(which must get the real value) and answers with placeholders that the LLM layer turns back into the raw values.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps

from agent_platform.observability.hooks import hub
from agents.models import Conversation, Message, Run, RunEvent
from agents.tests.test_chat_ws import communicator_for, receive_run
from agents.tools import Tool
from agents.tools.registry import registry
from tests.support.sinks import _fresh_sinks, _mock_price  # noqa: F401 - the mock's demo price, cold sink caches
from traces.models import Span

RAW_NEEDLES = {  # compact, upper-case forms: found whatever the separators, case or width of the original
    "e-mail": "ANN@EXAMPLECOM",
    "card": "4111111111111111",
    "iban": "DE89370400440532013000",
}
USER_MESSAGE = (
    "I am ann@example.com (also ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ). My card is 4111.1111.1111.1111 or "
    "４１１１ １１１１ １１１１ １１１１, my IBAN de89 3704 0044 0532 0130 00. What do you have on file?"
)
CRM_RECORD = {"email": "ann@example.com", "card": "4111 1111 1111 1111", "iban": "DE89 3704 0044 0532 0130 00"}


def leaks(text: str) -> list[str]:
    compact = re.sub(r"[\s.\-]", "", unicodedata.normalize("NFKC", text)).upper()
    return [name for name, needle in RAW_NEEDLES.items() if needle in compact]


def table_dump() -> list[tuple[str, str]]:
    """(model, row as JSON) for every row of every table of the project."""
    rows = []
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.managed or model._meta.proxy:
            continue
        names = [f.attname for f in model._meta.concrete_fields]
        for values in model.objects.values_list(*names):
            rows.append((model._meta.label, json.dumps(values, default=str, ensure_ascii=False)))
    return rows


class CustomerLookup(Tool):
    name = "crm_lookup"
    description = "Look a customer up."
    parameters = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
    queries: list[str] = []

    async def run(self, arguments, context):
        CustomerLookup.queries.append(arguments["query"])
        return CRM_RECORD


@pytest.fixture
def crm_tool():
    CustomerLookup.queries = []
    registry.register(CustomerLookup)
    yield CustomerLookup
    registry.unregister(CustomerLookup.name)


@pytest.mark.in_process("the crm_lookup tool is registered in this process, which reads what it was asked")
@pytest.mark.django_db(transaction=True)
async def test_after_a_masked_chat_run_no_table_holds_the_raw_pii(make_agent, scripted, user, crm_tool):
    await sync_to_async(make_agent)(pii_mask=True, tools=["crm_lookup"])
    scripted.queue_response(tool_calls=[{"name": "crm_lookup", "arguments": {"query": "the caller"}}])
    scripted.queue_response(tool_calls=[{"name": "crm_lookup", "arguments": {"query": "<EMAIL_1>"}}])
    # placeholders the LLM layer turns back into the raw values, and one raw value the model writes on its own
    scripted.queue_response(content="On file: card <CREDIT_CARD_1>, IBAN <IBAN_1>, e-mail <EMAIL_1> (ANN@EXAMPLE.COM).")

    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "message", "text": USER_MESSAGE})
    run_message, events = await receive_run(communicator)
    await communicator.disconnect()
    await sync_to_async(hub.flush)()

    assert events[-1]["type"] == "final", events[-1]
    # the tool still got the real value the model referred to by placeholder: masking is for storage, not for tools
    assert crm_tool.queries == ["the caller", "ann@example.com"]
    # the model was never sent a raw value
    assert len(scripted.calls) == 3
    for call in scripted.calls:
        assert not leaks(json.dumps(call.messages, ensure_ascii=False)), call.messages
    # what the socket showed is masked too, and still readable
    for event in events:
        assert not leaks(json.dumps(event, ensure_ascii=False)), event
    tokens = "".join(e["data"]["text"] for e in events if e["type"] == "token")
    assert (
        tokens == events[-1]["data"]["output"] == "On file: card [CREDIT_CARD], IBAN [IBAN], e-mail [EMAIL] ([EMAIL])."
    )

    # the dump of every table
    rows = await sync_to_async(table_dump)()
    leaked = [(label, leaks(row), row[:300]) for label, row in rows if leaks(row)]
    assert not leaked, leaked
    labels = {label for label, _row in rows}
    assert {"agents.Run", "agents.Message", "agents.RunEvent", "traces.Span", "costs.CostRecord"} <= labels

    # ...and it is the masked form that is stored, not nothing
    run = await Run.objects.aget(id=run_message["run_id"])
    assert run.input.startswith(
        "I am [EMAIL] (also [EMAIL]). My card is [CREDIT_CARD] or [CREDIT_CARD], my IBAN [IBAN]."
    )
    assert run.output == tokens
    conversation = await Conversation.objects.aget(id=run.conversation_id)
    assert conversation.title.startswith("I am [EMAIL]")
    assert [m.content async for m in Message.objects.filter(conversation=conversation).order_by("id")] == [
        run.input,
        run.output,
    ]
    spans = {s.kind: s async for s in Span.objects.filter(trace_id=run.trace_id).order_by("start_time")}
    assert "[EMAIL]" in json.dumps(spans["agent_run"].input)
    assert "[CREDIT_CARD]" in json.dumps(spans["tool"].output) and "[IBAN]" in json.dumps(spans["tool"].output)
    stored = [e.data async for e in RunEvent.objects.filter(run=run, type="tool_result")]
    assert len(stored) == 2 and all(e["result"]["card"] == "[CREDIT_CARD]" for e in stored)


@pytest.mark.runs
@pytest.mark.django_db(transaction=True)
async def test_an_agent_without_the_policy_stores_what_it_was_given(make_agent, scripted, user):
    """The control: masking is the agent's policy, not a blanket rewrite of everyone's text."""
    await sync_to_async(make_agent)(tools=[])
    scripted.queue_response(content="Noted, ann@example.com.")
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "message", "text": "I am ann@example.com"})
    run_message, _events = await receive_run(communicator)
    await communicator.disconnect()
    run = await Run.objects.aget(id=run_message["run_id"])
    assert run.input == "I am ann@example.com" and run.output == "Noted, ann@example.com."


# --- full stack: the run executes in a real Celery worker, which writes its events, spans and cost records ----------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
async def test_through_a_worker_a_masked_run_stores_no_raw_pii(celery_worker, fake_openai, user):
    from agents.tests.test_chat_ws import _fake_agent

    await sync_to_async(_fake_agent)(fake_openai, pii_mask=True)
    fake_openai.enqueue(content="Noted: ANN@EXAMPLE.COM and card 4111-1111-1111-1111 are on file.")
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "message", "text": USER_MESSAGE})
    run_message, events = await receive_run(communicator, timeout=60)
    await communicator.disconnect()
    assert events[-1]["type"] == "final", (events[-1], celery_worker.log())
    assert events[-1]["data"]["output"] == "Noted: [EMAIL] and card [CREDIT_CARD] are on file."
    assert [json.dumps(e) for e in events if leaks(json.dumps(e, ensure_ascii=False))] == []
    assert fake_openai.requests and not leaks(json.dumps([r.messages for r in fake_openai.requests]))

    run = await Run.objects.aget(id=run_message["run_id"])
    deadline = time.monotonic() + 30
    while not await Span.objects.filter(trace_id=run.trace_id, kind="llm").aexists():  # written as the task ends
        assert time.monotonic() < deadline, "the worker wrote no LLM span"
        await asyncio.sleep(0.05)
    rows = await sync_to_async(table_dump)()
    leaked = [(label, leaks(row), row[:300]) for label, row in rows if leaks(row)]
    assert not leaked, leaked
    assert await RunEvent.objects.filter(run=run, type="token").aexists()
