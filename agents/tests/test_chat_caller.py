"""Chat runs are attributed like REST runs: the socket's user (and API key) on the run, its trace and its cost records,
so the user's hard budgets refuse chat as they refuse REST. Written as the probe that found chat unattributed."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from agents.models import Run, RunStatus
from agents.tests.test_chat_ws import _fake_agent, communicator_for, receive_run
from costs.models import Budget, CostRecord, Price
from costs.services import budget_save, price_save
from tests.support.sinks import _fresh_sinks, _mock_price  # noqa: F401 - the mock's demo price, cold sink caches
from tests.support.worker import budgets_reach_the_worker, records_written
from traces.models import Span, Trace

# The mock's demo price is 0.50 in / 1.50 out per million tokens. A run of this agent is estimated at about
# 0.00015 before its call (max_tokens 100), within the limit; its answer of ~100 tokens costs about as much, so after
# it the next run's estimate no longer fits and every run is refused.
LIMIT = Decimal("0.0002")
LONG_ANSWER = " ".join(f"word{i}" for i in range(100))


def _spend_budget_agent(make_agent):
    return make_agent(parameters={"max_tokens": 100}, tools=[])


def _user_budget(user) -> Budget:
    return budget_save(
        budget=Budget(
            name="alice total", scope="user", scope_id=user.pk, period="total", limit=LIMIT, enforcement="hard",
            thresholds=[],
        )
    )  # fmt: skip


async def _reload(budget: Budget) -> Budget:
    await sync_to_async(records_written)()
    return await Budget.objects.aget(pk=budget.pk)


async def _chat(communicator, text: str) -> tuple[dict, list[dict]]:
    await communicator.send_json_to({"type": "message", "text": text})
    return await receive_run(communicator, timeout=60)


@pytest.mark.runs
@pytest.mark.django_db(transaction=True)
async def test_a_per_user_hard_budget_spent_over_rest_refuses_chat(make_agent, scripted, user, session_client):
    await sync_to_async(_spend_budget_agent)(make_agent)
    budget = await sync_to_async(_user_budget)(user)
    await sync_to_async(budgets_reach_the_worker)()

    scripted.queue_response(content=LONG_ANSWER)
    post = sync_to_async(session_client.post)
    response = await post("/api/v1/agents/helper/runs/", {"input": "spend it", "wait": True}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.json()
    spent = (await _reload(budget)).spent
    assert spent > 0
    response = await post("/api/v1/agents/helper/runs/", {"input": "more", "wait": True}, format="json")
    assert response.json()["error"]["code"] == "BUDGET_EXCEEDED"  # REST is refused now

    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    for attempt in range(3):  # the probe sent three messages after the budget was spent
        scripted.queue_response(content=LONG_ANSWER)
        run_message, events = await _chat(communicator, f"chat anyway {attempt}")
        error = events[-1]
        assert error["type"] == "error" and error["data"]["code"] == "BUDGET_EXCEEDED", events
        assert error["data"]["trace_id"] == run_message["trace_id"]
        assert not [e for e in events if e["type"] == "token"]  # no answer was produced
        run = await Run.objects.aget(id=run_message["run_id"])
        assert run.user_id == user.pk and run.status == RunStatus.FAILED and run.error_code == "BUDGET_EXCEEDED"
    await communicator.disconnect()

    assert (await _reload(budget)).spent == spent  # nothing more was spent
    assert await CostRecord.objects.filter(cost__gt=0).acount() == 1  # only the REST run was billed


@pytest.mark.runs
@pytest.mark.django_db(transaction=True)
async def test_a_chat_runs_trace_spans_and_cost_records_carry_the_user(make_agent, scripted, user):
    await sync_to_async(make_agent)()
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}])
    scripted.queue_response(content="42")
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    run_message, events = await _chat(communicator, "6*7?")
    assert events[-1]["type"] == "final", events[-1]
    await communicator.disconnect()
    await sync_to_async(records_written)()

    run = await Run.objects.aget(id=run_message["run_id"])
    assert run.user_id == user.pk and run.llm_calls == 2
    trace = await Trace.objects.aget(trace_id=run.trace_id)
    assert trace.user_id == user.pk
    spans = [s async for s in Span.objects.filter(trace_id=run.trace_id)]
    assert {s.kind for s in spans} >= {"agent_run", "llm", "tool"}
    assert {s.user_id for s in spans} == {user.pk}
    records = [r async for r in CostRecord.objects.filter(trace_id=run.trace_id)]
    assert len(records) == 2 and {r.user_id for r in records} == {user.pk}
    assert {r.run_id for r in records} == {str(run.id)} and all(r.cost > 0 for r in records)


@pytest.mark.in_process("its first run must meet a budget made just before: a worker's index sees it a second later")
@pytest.mark.django_db(transaction=True)
async def test_a_socket_authenticated_by_an_api_key_charges_the_key_and_its_team(make_agent, scripted, user):
    from agent_platform.accounts.services import api_key_create, team_create

    def setup():
        make_agent()
        team = team_create(name="blue", members=[user])
        api_key = api_key_create(user=user, name="chat key", team=team).api_key
        team_budget = budget_save(
            budget=Budget(name="blue", scope="team", scope_id=team.pk, limit=Decimal(0), enforcement="hard")
        )
        return api_key, team_budget

    api_key, team_budget = await sync_to_async(setup)()
    communicator = communicator_for(user)
    communicator.scope["api_key"] = api_key  # what an API-key authentication middleware puts in the scope
    assert (await communicator.connect())[0]
    run_message, events = await _chat(communicator, "hello")
    assert events[-1]["data"]["code"] == "BUDGET_EXCEEDED"  # the key's team's (zero) budget applies
    team_budget.is_active = False
    await sync_to_async(budget_save)(budget=team_budget)
    scripted.queue_response(content="hi")
    run_message, events = await _chat(communicator, "hello again")
    assert events[-1]["type"] == "final", events[-1]
    await communicator.disconnect()
    await sync_to_async(records_written)()
    run = await Run.objects.aget(id=run_message["run_id"])
    assert run.user_id == user.pk and run.api_key_id == api_key.pk
    record = await CostRecord.objects.aget(trace_id=run.trace_id)
    assert (record.user_id, record.api_key_id, record.team_id) == (user.pk, api_key.pk, api_key.team_id)


async def _written(queryset, timeout: float = 30):
    """The one row of `queryset` once the worker has written it (it flushes its records as its task ends, just
    after the run's last event went out)."""
    deadline = time.monotonic() + timeout
    while not await queryset.aexists():
        assert time.monotonic() < deadline, f"no {queryset.model.__name__} was written"
        await asyncio.sleep(0.05)
    return await queryset.aget()


# --- full stack: the caller travels to a real Celery worker in the task's headers -------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
async def test_through_a_worker_chat_is_charged_to_the_user_and_then_refused(celery_worker, fake_openai, user):
    fake_openai.token_delay = 0.0

    def setup() -> Budget:
        _fake_agent(fake_openai, parameters={"max_tokens": 100})
        price_save(
            price=Price(
                provider="openai", model=f"openai/{fake_openai.model}", input_per_million=Decimal("0.50"),
                output_per_million=Decimal("1.50"),
            )
        )  # fmt: skip
        return _user_budget(user)

    budget = await sync_to_async(setup)()
    await sync_to_async(budgets_reach_the_worker)()
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    fake_openai.enqueue(content=LONG_ANSWER)
    run_message, events = await _chat(communicator, "spend it")
    assert events[-1]["type"] == "final", (events[-1], celery_worker.log())
    run = await Run.objects.aget(id=run_message["run_id"])
    # a worker stores the attempt as "started" before its request: wait for the record of how it ended
    record = await _written(CostRecord.objects.filter(trace_id=run.trace_id).exclude(status=CostRecord.STARTED))
    assert run.user_id == user.pk and record.user_id == user.pk and record.cost > 0
    assert (await Budget.objects.aget(pk=budget.pk)).spent == record.cost

    fake_openai.enqueue(content=LONG_ANSWER)
    run_message, events = await _chat(communicator, "and again")
    assert events[-1]["type"] == "error" and events[-1]["data"]["code"] == "BUDGET_EXCEEDED", events[-1]
    await communicator.disconnect()
    assert (await Budget.objects.aget(pk=budget.pk)).spent == record.cost
