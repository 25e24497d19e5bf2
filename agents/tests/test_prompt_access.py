"""A team B member tries to reach team A's private prompt through agents: by naming it in an agent, by running an
agent that names it, by the prompt_lookup tool, by calling another agent. Each is refused as if the prompt did not
exist, and nothing of it (text, variables) reaches the run, its events, its trace or the model."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from agent_platform.accounts.services import team_create
from agent_platform.api.errors import PlatformError
from agents import services
from agents.models import AgentDefinition, RunEvent, RunStatus
from agents.tools import ToolContext, execute_tool
from prompts.services import label_move, prompt_create, prompt_update
from tests.factories import UserFactory
from tests.support.worker import records_written

pytestmark = pytest.mark.django_db

SECRET = "Team A secret: launch at {{ launch_code }}"


@pytest.fixture
def world():
    author = UserFactory(username="ann")  # wrote team A's prompt (its owner)
    a_member = UserFactory(username="amy")
    b_member = UserFactory(username="bert")
    team_a = team_create(name="team-a", members=[author, a_member])
    team_b = team_create(name="team-b", members=[b_member])
    prompt_create(name="a-secret", text=SECRET, team=team_a, user=author)
    prompt_create(name="shared-system", text="You are {{ agent_name }}, shared.", user=author)
    for name in ("a-secret", "shared-system"):  # agents serve the production label by default
        label_move(name=name, label="production", version=1)
    return {"a_member": a_member, "b_member": b_member, "team_a": team_a, "team_b": team_b}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def agent_body(**overrides):
    return {"slug": "sneaky", "name": "Sneaky", "model_endpoint": "mock/scripted", **overrides}


def leaks(*texts) -> bool:
    blob = " ".join(texts)
    return "launch" in blob or "Team A secret" in blob


def stored_trace_text(trace_id: str) -> str:
    from traces.models import Span

    records_written()
    spans = Span.objects.filter(trace_id=trace_id).values("name", "input", "output", "error_message", "attributes")
    return json.dumps(list(spans), default=str)


# --- save time ---------------------------------------------------------------------------------------------------


def test_team_b_cannot_create_an_agent_naming_team_a_prompt(world):
    attacker = client_for(world["b_member"])
    hidden = attacker.post("/api/v1/agents/", agent_body(system_prompt_name="a-secret"), format="json")
    missing = attacker.post(
        "/api/v1/agents/", agent_body(slug="other", system_prompt_name="no-such-prompt"), format="json"
    )
    assert hidden.status_code == 404, hidden.content
    error = hidden.json()["error"]
    assert error["code"] == "PROMPT_NOT_FOUND" and error["details"]["field"] == "system_prompt_name"
    # the same answer as for a prompt that does not exist
    assert missing.status_code == 404
    assert error["message"].replace("a-secret", "X") == missing.json()["error"]["message"].replace(
        "no-such-prompt", "X"
    )
    assert not AgentDefinition.objects.filter(slug__in=["sneaky", "other"]).exists()
    # with a team too: team B's agent may not name team A's prompt
    r = attacker.post(
        "/api/v1/agents/", agent_body(system_prompt_name="a-secret", team=world["team_b"].pk), format="json"
    )
    assert r.status_code == 404 and not AgentDefinition.objects.filter(slug="sneaky").exists()
    # a shared prompt is fine
    r = attacker.post("/api/v1/agents/", agent_body(system_prompt_name="shared-system"), format="json")
    assert r.status_code == 201, r.content


def test_team_b_cannot_point_an_existing_agent_at_team_a_prompt(world):
    attacker = client_for(world["b_member"])
    assert attacker.post("/api/v1/agents/", agent_body(system_prompt_text="hi"), format="json").status_code == 201
    r = attacker.patch("/api/v1/agents/sneaky/", {"system_prompt_name": "a-secret"}, format="json")
    assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "system_prompt_name"
    assert AgentDefinition.objects.get(slug="sneaky").system_prompt_name == ""


def test_a_team_a_agent_cannot_be_moved_into_team_b_with_team_a_prompt(world):
    both = UserFactory(username="both")
    world["team_a"].members.add(both)
    world["team_b"].members.add(both)
    member = client_for(both)
    body = agent_body(system_prompt_name="a-secret", team=world["team_a"].pk)
    assert member.post("/api/v1/agents/", body, format="json").status_code == 201
    r = member.patch("/api/v1/agents/sneaky/", {"team": world["team_b"].pk}, format="json")
    assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "system_prompt_name"
    assert AgentDefinition.objects.get(slug="sneaky").team_id == world["team_a"].pk


def test_team_a_may_name_its_own_prompt(world):
    r = client_for(world["a_member"]).post("/api/v1/agents/", agent_body(system_prompt_name="a-secret"), format="json")
    assert r.status_code == 201, r.content


# --- run time ---------------------------------------------------------------------------------------------------


@pytest.mark.runs
def test_an_agent_whose_prompt_became_unreadable_fails_its_run_without_leaking_it(world, scripted, admin_user):
    """Amy's agent used team A's prompt (Ann's); then the prompt moved to a team Amy is not in (by staff)."""
    agent = services.agent_create(
        data={"slug": "amys", "name": "Amy's", "model_endpoint": "mock/scripted", "system_prompt_name": "a-secret"},
        owner=world["a_member"],
    )
    team_c = team_create(name="team-c", members=[])
    prompt_update(name="a-secret", team=team_c, user=admin_user)

    run = services.run_start(agent=agent, input="go", user=world["a_member"], wait=True)

    assert run.status == RunStatus.FAILED and run.error_code == "PROMPT_NOT_FOUND"
    assert run.error_message == "No prompt named 'a-secret'."  # as for a prompt that does not exist
    assert scripted.calls == []  # the model never saw it
    events = json.dumps(list(RunEvent.objects.filter(run=run).values("type", "data")))
    assert not leaks(run.error_message, run.output, events, stored_trace_text(run.trace_id))


@pytest.mark.runs
def test_a_shared_agent_naming_team_a_prompt_renders_it_only_for_team_a_callers(world, scripted):
    """The stricter rule: the agent's owner (here: none, a platform agent) AND the run's caller must both be
    allowed to read the prompt, because the caller sees the rendered text in the run's trace."""
    agent = services.agent_create(
        data={"slug": "shared", "name": "Shared", "model_endpoint": "mock/scripted", "system_prompt_name": "a-secret"}
    )
    run = services.run_start(agent=agent, input="go", user=world["b_member"], wait=True)
    assert run.status == RunStatus.FAILED and run.error_code == "PROMPT_NOT_FOUND"
    assert scripted.calls == []
    events = json.dumps(list(RunEvent.objects.filter(run=run).values("type", "data")))
    assert not leaks(run.error_message, events, stored_trace_text(run.trace_id))
    # a failed render would name the variables: it must not be reached for team B
    assert "launch_code" not in events and "launch_code" not in run.error_message

    # with no caller at all (a trigger), nobody in particular: shared prompts only
    run = services.run_start(agent=agent, input="go", user=None, wait=True)
    assert run.status == RunStatus.FAILED and run.error_code == "PROMPT_NOT_FOUND"

    # team A's caller may: the prompt renders (its missing variable is named, to someone allowed to read it)
    run = services.run_start(agent=agent, input="go", user=world["a_member"], wait=True)
    assert run.error_code == "PROMPT_VARIABLE_MISSING" and "launch_code" in run.error_message
    agent.parameters = {"prompt_variables": {"launch_code": "0000"}}
    agent.save()
    scripted.queue_response(content="ok")
    run = services.run_start(agent=agent, input="go", user=world["a_member"], wait=True)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert scripted.calls[-1].messages[0]["content"] == "Team A secret: launch at 0000"


@pytest.mark.runs
def test_an_unreadable_prompt_falls_back_to_the_agents_inline_text(world, scripted):
    agent = services.agent_create(
        data={
            "slug": "fallback",
            "name": "Fallback",
            "model_endpoint": "mock/scripted",
            "system_prompt_name": "a-secret",
            "system_prompt_text": "You are a plain helper.",
        }
    )
    scripted.queue_response(content="ok")
    run = services.run_start(agent=agent, input="go", user=world["b_member"], wait=True)
    assert run.status == RunStatus.SUCCEEDED
    assert scripted.calls[-1].messages[0]["content"] == "You are a plain helper."
    assert run.prompt_name in ("", None)


def test_calling_another_agent_reads_its_prompt_as_the_caller(world):
    services.agent_create(
        data={
            "slug": "expert",
            "name": "Expert",
            "model_endpoint": "mock/scripted",
            "system_prompt_name": "a-secret",
            "parameters": {"prompt_variables": {"launch_code": "0000"}},
        }
    )
    with pytest.raises(PlatformError) as err:
        services.agent_spec_for_slug("expert", world["b_member"].pk)
    assert err.value.code == "PROMPT_NOT_FOUND" and not leaks(err.value.message, json.dumps(err.value.details))
    spec = services.agent_spec_for_slug("expert", world["a_member"].pk)
    assert spec.prompt_name == "a-secret" and spec.system_prompt == "Team A secret: launch at 0000"


# --- the prompt_lookup tool --------------------------------------------------------------------------------------


def lookup(name: str, variables=None, **context):
    from asgiref.sync import async_to_sync

    return async_to_sync(execute_tool)(
        name="prompt_lookup",
        arguments={"name": name, "variables": variables or {"launch_code": "0000"}},
        allowed=["prompt_lookup"],
        context=ToolContext(**context),
    )


def test_prompt_lookup_refuses_team_a_prompt_to_team_b(world):
    services.agent_create(
        data={"slug": "b-agent", "name": "B", "model_endpoint": "mock/scripted", "tools": ["prompt_lookup"]},
        owner=world["b_member"],
    )
    services.agent_create(
        data={"slug": "a-agent", "name": "A", "model_endpoint": "mock/scripted", "tools": ["prompt_lookup"]},
        owner=world["a_member"],
    )
    refused = [
        lookup("a-secret", agent_slug="b-agent", user_id=world["b_member"].pk),  # team B's agent, team B's caller
        lookup("a-secret", agent_slug="b-agent", user_id=world["a_member"].pk),  # team B's agent, even for amy
        lookup("a-secret", agent_slug="a-agent", user_id=world["b_member"].pk),  # amy's agent, bert calling
        lookup("a-secret", agent_slug="shared-unknown"),  # nobody in particular: shared prompts only
    ]
    missing = lookup("no-such-prompt", agent_slug="b-agent", user_id=world["b_member"].pk)
    for outcome in refused:
        assert not outcome.ok and outcome.error_code == "PROMPT_NOT_FOUND"
        assert outcome.error_message.replace("a-secret", "X") == missing.error_message.replace("no-such-prompt", "X")
        assert not leaks(outcome.error_message, json.dumps(outcome.result, default=str))
    allowed = lookup("a-secret", agent_slug="a-agent", user_id=world["a_member"].pk)
    assert allowed.ok and allowed.result["text"] == "Team A secret: launch at 0000"
    shared = lookup("shared-system", agent_slug="b-agent", user_id=world["b_member"].pk, variables={"agent_name": "B"})
    assert shared.ok and shared.result["text"] == "You are B, shared."
