"""Runs: the service, memory, idempotency, cancel, the reaper. Tests marked `runs` go through the real worker on the
full stack (in-process on the embedded default); the others execute a run here, by calling the service."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agents import services
from agents.memory import trim_messages
from agents.models import Message, Run, RunEvent, RunStatus
from agents.services import execution, reaper

pytestmark = pytest.mark.django_db


@pytest.mark.runs
def test_run_start_wait_executes_the_agent_and_stores_everything(make_agent, scripted, user):
    agent = make_agent()
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "19*23"}}])
    scripted.queue_response(content="It is **437**.")
    run = services.run_start(agent=agent, input="19*23?", user=user, wait=True)

    assert run.status == RunStatus.SUCCEEDED
    assert run.output == "It is **437**."
    assert run.llm_calls == 2 and run.input_tokens > 0 and run.output_tokens > 0
    assert run.attempts == 1 and run.started_at and run.finished_at and len(run.trace_id) == 32
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run_started" and events[-1].type == "final"
    assert events[-1].data["html"] == "<p>It is <strong>437</strong>.</p>\n"
    roles = list(Message.objects.filter(conversation=run.conversation).values_list("role", "content"))
    assert roles == [("user", "19*23?"), ("assistant", "It is **437**.")]


@pytest.mark.runs
def test_a_failed_run_records_the_error_code(make_agent, scripted, user):
    agent = make_agent(tools=["calculator"])
    scripted.queue_response(tool_calls=[{"name": "current_time", "arguments": {}}])
    run = services.run_start(agent=agent, input="time?", user=user, wait=True)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "TOOL_NOT_ALLOWED" and "current_time" in run.error_message
    # no assistant answer was stored for a failed run
    assert not Message.objects.filter(conversation=run.conversation, role="assistant").exists()


def test_a_disabled_agent_refuses_runs(make_agent, user):
    agent = make_agent(enabled=False)
    with pytest.raises(PlatformError) as exc:
        services.run_start(agent=agent, input="hi", user=user)
    assert exc.value.code == "AGENT_DISABLED"
    assert not Run.objects.exists()


@pytest.mark.runs
def test_the_conversation_is_the_memory_of_the_next_run(make_agent, scripted, user):
    agent = make_agent(tools=[])
    scripted.queue_response(content="Nice to meet you, Zoe.")
    first = services.run_start(agent=agent, input="My name is Zoe.", user=user, wait=True)
    scripted.queue_response(content="Your name is Zoe.")
    services.run_start(agent=agent, input="What is my name?", conversation=first.conversation, user=user, wait=True)
    sent = scripted.calls[-1].messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "My name is Zoe." and sent[-1]["content"] == "What is my name?"


@pytest.mark.runs
def test_context_is_trimmed_to_the_window_oldest_first_system_kept(make_agent, scripted, user):
    agent = make_agent(tools=[], memory={"max_context_tokens": 400}, parameters={"max_tokens": 50})
    conversation = services.conversation_create(agent=agent, user=user)
    for i in range(30):
        Message.objects.create(conversation=conversation, role="user", content=f"old message {i} " + "word " * 20)
        Message.objects.create(conversation=conversation, role="assistant", content=f"old answer {i}")
    scripted.queue_response(content="ok")
    services.run_start(agent=agent, input="the newest question", conversation=conversation, user=user, wait=True)
    sent = scripted.calls[-1].messages
    assert sent[0] == {"role": "system", "content": "You are a helpful test agent."}
    assert sent[-1]["content"] == "the newest question"
    assert 3 < len(sent) < 61  # trimmed, but not to nothing
    from agent_platform.llm.client import count_tokens

    assert count_tokens(endpoint="mock/scripted", messages=sent) <= 400 - 50
    # what was dropped is the oldest
    kept = [m["content"] for m in sent[1:-1]]
    assert "old answer 29" in kept and not any(c.startswith("old message 0 ") for c in kept)


def test_trim_never_drops_the_newest_message_nor_starts_with_a_tool_result():
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "tool_call_id": "1", "content": "x" * 400},
        {"role": "user", "content": "y" * 4000},
    ]
    kept = trim_messages(endpoint="mock/scripted", system=None, messages=messages, budget=10)
    assert kept == messages[-1:]


@pytest.mark.runs
def test_clearing_a_conversation_removes_its_messages(make_agent, scripted, user):
    agent = make_agent(tools=[])
    run = services.run_start(agent=agent, input="hello", user=user, wait=True)
    assert services.conversation_clear(conversation=run.conversation) == 2
    assert not Message.objects.filter(conversation=run.conversation).exists()


@pytest.mark.runs
def test_a_redelivered_task_for_a_finished_run_does_nothing_and_bills_nothing(make_agent, scripted, user):
    agent = make_agent(tools=[])
    run = services.run_start(agent=agent, input="hello", user=user, wait=True)
    calls, tokens, events = len(scripted.calls), run.total_tokens, RunEvent.objects.filter(run=run).count()
    assert services.run_execute(run_id=run.id) is None  # the redelivery
    run.refresh_from_db()
    assert len(scripted.calls) == calls and run.total_tokens == tokens and run.attempts == 1
    assert RunEvent.objects.filter(run=run).count() == events


def test_a_queued_run_can_be_cancelled_and_then_never_executes(make_agent, scripted, user):
    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    services.run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.error_code == "RUN_CANCELLED"
    assert services.run_execute(run_id=run.id) is None and scripted.calls == []
    assert RunEvent.objects.get(run=run).data["code"] == "RUN_CANCELLED"
    with pytest.raises(PlatformError) as exc:
        services.run_cancel(run=run)
    assert exc.value.code == "RUN_NOT_CANCELLABLE"


def test_a_running_run_notices_cancellation_at_its_heartbeat(make_agent, scripted, user, settings, monkeypatch):
    settings.AGENT_RUN_HEARTBEAT_SECONDS = 0.05
    agent = make_agent(tools=[])
    scripted.token_delay = 0.02
    scripted.queue_response(content=" ".join(["word"] * 200))
    run = services.run_create(agent=agent, input="long answer please", user=user)
    real_heartbeat = services.run_heartbeat

    def heartbeat_after_a_cancel(*, run_id):
        # someone (the API, another process) cancels the run between two heartbeats
        services.run_cancel(run=Run.objects.get(id=run_id))
        return real_heartbeat(run_id=run_id)

    monkeypatch.setattr(execution, "run_heartbeat", heartbeat_after_a_cancel)  # as the executing run calls it
    finished = services.run_execute(run_id=run.id)
    assert finished.status == RunStatus.CANCELLED
    assert finished.output == ""
    last = RunEvent.objects.filter(run=run).order_by("-seq").first()
    assert last.type == "error" and last.data["code"] == "RUN_CANCELLED"
    assert RunEvent.objects.filter(run=run, type="token").count() < 200


@pytest.mark.runs
def test_the_reaper_requeues_a_run_left_running_once_then_fails_it(make_agent, scripted, user):
    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    stale = timezone.now() - timedelta(minutes=5)
    # a worker claimed it, then died
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING, attempts=1, heartbeat_at=stale, started_at=stale)
    report = services.runs_reap_stale(stale_after=timedelta(seconds=60))
    assert report == {"requeued": 1, "failed": 0}
    run = services.run_wait(run_id=run.id, timeout=60)  # re-queued and executed again (at once, in-process)
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2
    assert run.llm_calls == 1  # billed for the attempt that finished, once
    started = RunEvent.objects.filter(run=run, type="run_started").values_list("seq", flat=True)
    assert list(started) == [services.ATTEMPT_SEQ_STRIDE + 1]

    # the same thing happens again: this time it is given up with a reason
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING, heartbeat_at=stale)
    report = services.runs_reap_stale(stale_after=timedelta(seconds=60))
    assert report == {"requeued": 0, "failed": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error_code == "RUN_WORKER_LOST"


def test_the_reaper_leaves_live_runs_alone(make_agent, user):
    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now())
    assert services.runs_reap_stale(stale_after=timedelta(seconds=60)) == {"requeued": 0, "failed": 0}


@pytest.mark.runs
def test_system_prompt_comes_from_the_prompt_store_with_its_version(make_agent, scripted, user):
    from prompts.services import prompt_create

    prompt_create(
        name="helper-system",
        template_type="text",
        text="You are {{ agent_name }}. Today's question: {{ question }}",
        labels=["production"],
    )
    agent = make_agent(tools=[], system_prompt_name="helper-system", system_prompt_text="")
    scripted.queue_response(content="ok")
    run = services.run_start(agent=agent, input="why?", user=user, wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert scripted.calls[-1].messages[0]["content"] == "You are Helper. Today's question: why?"
    assert run.prompt_name == "helper-system" and run.prompt_version == 1


@pytest.mark.runs
def test_a_missing_stored_prompt_without_inline_text_fails_the_run(make_agent, scripted, user):
    agent = make_agent(tools=[], system_prompt_name="nope", system_prompt_text="")
    run = services.run_start(agent=agent, input="why?", user=user, wait=True)
    assert run.status == RunStatus.FAILED and run.error_code == "PROMPT_NOT_FOUND"
    assert scripted.calls == []


@pytest.mark.runs
def test_an_agent_calls_another_agent_the_user_may_see(make_agent, scripted, user, other_user):
    make_agent(slug="expert", tools=[], system_prompt_text="You are the expert.")
    make_agent(slug="private", tools=[], owner=other_user)
    boss = make_agent(slug="boss", tools=["call_agent"])
    scripted.queue_response(tool_calls=[{"name": "call_agent", "arguments": {"agent": "expert", "input": "2+2?"}}])
    scripted.queue_response(content="four")  # the expert
    scripted.queue_response(content="The expert says four.")
    run = services.run_start(agent=boss, input="ask the expert", user=user, wait=True)
    assert run.status == RunStatus.SUCCEEDED and run.output == "The expert says four."
    assert run.llm_calls == 3
    assert scripted.calls[1].messages[0] == {"role": "system", "content": "You are the expert."}

    scripted.queue_response(tool_calls=[{"name": "call_agent", "arguments": {"agent": "private", "input": "hi"}}])
    run = services.run_start(agent=boss, input="ask the private one", user=user, wait=True)
    assert run.status == RunStatus.FAILED and run.error_code == "AGENT_NOT_FOUND"


@pytest.mark.in_process("the inline reaper is the embedded default's")
def test_on_the_embedded_default_a_run_left_by_a_dead_process_is_failed_from_the_request_path(
    make_agent, scripted, user, monkeypatch
):
    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    stale = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING, attempts=1, heartbeat_at=stale)
    monkeypatch.setattr(reaper, "_last_inline_reap", 0.0)
    services.run_start(agent=agent, input="another", user=user, wait=True)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error_code == "RUN_WORKER_LOST"


@pytest.mark.runs
def test_with_summarize_the_trimmed_messages_become_a_summary(make_agent, scripted, user):
    agent = make_agent(tools=[], memory={"max_context_tokens": 900, "summarize": True}, parameters={"max_tokens": 50})
    conversation = services.conversation_create(agent=agent, user=user)
    Message.objects.create(conversation=conversation, role="user", content="My name is Zoe and I like 42. " * 5)
    for i in range(30):
        Message.objects.create(conversation=conversation, role="assistant", content=f"filler {i} " + "word " * 20)
    scripted.queue_response(content="The user is Zoe, who likes 42.")  # the summary
    scripted.queue_response(content="Your name is Zoe.")
    run = services.run_start(agent=agent, input="What is my name?", conversation=conversation, user=user, wait=True)
    assert run.status == RunStatus.SUCCEEDED and run.llm_calls == 2
    summary_call, answer_call = scripted.calls[-2], scripted.calls[-1]
    assert "My name is Zoe" in summary_call.messages[-1]["content"]
    assert answer_call.messages[1] == {
        "role": "system",
        "content": "Summary of the earlier conversation: The user is Zoe, who likes 42.",
    }
    assert not any("My name is Zoe" in (m["content"] or "") for m in answer_call.messages)


def test_a_run_can_be_created_with_the_id_its_caller_chose(make_agent, scripted, user):
    import uuid

    from django.db import IntegrityError

    agent = make_agent(tools=[])
    chosen = uuid.uuid4()
    run = services.run_create(agent=agent, input="hello", user=user, run_id=chosen)
    assert run.id == chosen and Run.objects.get(id=chosen).status == RunStatus.QUEUED
    with pytest.raises(IntegrityError):  # the id is the primary key: a second run cannot take it
        services.run_create(agent=agent, input="again", user=user, run_id=chosen)


def test_a_run_whose_agent_was_disabled_after_it_was_queued_fails_with_agent_disabled(make_agent, scripted, user):
    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    services.agent_update(agent=agent, data={"enabled": False})
    finished = services.run_execute(run_id=run.id)
    assert finished.status == RunStatus.FAILED and finished.error_code == "AGENT_DISABLED"
    assert scripted.calls == []  # the model was never called
    assert RunEvent.objects.get(run=run, type="error").data["code"] == "AGENT_DISABLED"


@pytest.mark.django_db(transaction=True)
def test_claiming_takes_a_queued_run_once_and_leaves_the_connection_committing_durably(make_agent, user):
    """Outside a transaction, PostgreSQL claims with one statement; on SQLite the ORM's conditional UPDATE."""
    from django.db import connection

    agent = make_agent(tools=[])
    run = services.run_create(agent=agent, input="hello", user=user)
    claimed = services.run_claim(run_id=run.id)
    assert claimed.id == run.id and claimed.status == RunStatus.RUNNING and claimed.attempts == 1
    assert claimed.agent == agent and claimed.input == "hello" and claimed.started_at is not None
    assert claimed.conversation_id == run.conversation_id and claimed.cost is None
    assert services.run_claim(run_id=run.id) is None  # a duplicate task takes nothing
    stored = Run.objects.get(id=run.id)
    assert stored.status == RunStatus.RUNNING and stored.attempts == 1 and stored.heartbeat_at == claimed.started_at
    if connection.vendor == "postgresql":  # the asynchronous commit was for the claim's own transaction only
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


@pytest.mark.django_db(transaction=True)
def test_a_claim_sees_every_change_to_its_agent_even_one_made_without_save(make_agent, user):
    """The claim reads the run's agent as it is now: any change is seen, and each run has its own instance."""
    from agents.models import AgentDefinition

    agent = make_agent(tools=[], system_prompt_text="Be brief.")
    first = services.run_claim(run_id=services.run_create(agent=agent, input="one", user=user).id)
    second = services.run_claim(run_id=services.run_create(agent=agent, input="two", user=user).id)
    assert first.agent.system_prompt_text == second.agent.system_prompt_text == "Be brief."
    assert first.agent is not second.agent  # each run has its own instance
    # a queryset update neither calls save() nor touches updated_at
    AgentDefinition.objects.filter(id=agent.id).update(system_prompt_text="Be thorough.", enabled=False)
    third = services.run_claim(run_id=services.run_create(agent=agent, input="three", user=user).id)
    assert third.agent.system_prompt_text == "Be thorough." and third.agent.enabled is False


def test_the_finished_run_returned_is_the_run_as_stored(make_agent, scripted, user):
    agent = make_agent(tools=[])
    scripted.queue_response(content="Done.")
    run = services.run_create(agent=agent, input="hello", user=user)
    finished = services.run_execute(run_id=run.id)
    stored = Run.objects.get(id=run.id)
    fields = ("status", "output", "error_code", "input_tokens", "output_tokens", "llm_calls", "cost", "finished_at")
    assert [getattr(finished, f) for f in fields] == [getattr(stored, f) for f in fields]
    assert stored.status == RunStatus.SUCCEEDED and stored.output == "Done." and stored.llm_calls == 1


def test_the_first_run_of_a_conversation_sends_the_system_prompt_and_the_question(make_agent, scripted, user):
    agent = make_agent(tools=[])
    scripted.queue_response(content="Hi.")
    run = services.run_create(agent=agent, input="Hello there.", user=user)
    services.run_execute(run_id=run.id)
    assert [(m["role"], m["content"]) for m in scripted.calls[-1].messages] == [
        ("system", "You are a helpful test agent."),
        ("user", "Hello there."),
    ]


def test_a_finished_runs_cost_is_returned_as_the_column_stores_it(make_agent, user):
    from decimal import Decimal

    from agents.orchestrator import Orchestrator

    agent = make_agent(tools=[])
    run = services.run_claim(run_id=services.run_create(agent=agent, input="hello", user=user).id)
    orchestrator = Orchestrator(services.agent_spec_build(agent=agent), [], run_id=str(run.id))
    orchestrator.output = "Done."
    orchestrator.totals.cost = Decimal("0.000012345678901") + Decimal("0.000000000000005")  # more places than kept
    finished = services.run_finish(run=run, orchestrator=orchestrator, events=[])
    stored = Run.objects.get(id=run.id)
    assert finished.cost == stored.cost == Decimal("0.00001235")
    assert finished.status == stored.status == RunStatus.SUCCEEDED and finished.finished_at == stored.finished_at
