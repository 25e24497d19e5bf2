"""The agents API: catalog, CRUD, runs, events, conversations; errors in the envelope. Runs (`runs`) go through the
real worker on the full stack."""

import pytest

from agents.models import AgentDefinition, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(make_agent):
    return make_agent(category="math", description="Adds numbers")


def test_catalog_lists_filters_searches_and_paginates(key_client, make_agent):
    for i in range(7):
        make_agent(slug=f"bot-{i}", category="math" if i % 2 else "writing", description=f"bot number {i}")
    body = key_client.get("/api/v1/agents/?page_size=3").json()
    assert body["count"] == 7 and len(body["results"]) == 3 and body["next"]
    body = key_client.get("/api/v1/agents/?category=math").json()
    assert {a["slug"] for a in body["results"]} == {"bot-1", "bot-3", "bot-5"}
    body = key_client.get("/api/v1/agents/?search=number 4").json()
    assert [a["slug"] for a in body["results"]] == ["bot-4"]


def test_users_see_shared_agents_and_their_own_not_others(key_client, make_agent, user, other_user):
    make_agent(slug="shared")
    make_agent(slug="mine", owner=user)
    make_agent(slug="theirs", owner=other_user)
    slugs = {a["slug"] for a in key_client.get("/api/v1/agents/").json()["results"]}
    assert slugs == {"shared", "mine"}
    response = key_client.get("/api/v1/agents/theirs/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_create_update_delete_an_agent(key_client, user):
    payload = {
        "slug": "writer",
        "name": "Writer",
        "model_endpoint": "mock/writer",
        "system_prompt_text": "Write well.",
        "tools": ["current_time"],
        "max_iterations": 4,
    }
    response = key_client.post("/api/v1/agents/", payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["owner"] == user.username and response.json()["chat_url"] == "/chat/writer/"
    response = key_client.patch("/api/v1/agents/writer/", {"description": "Writes"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "Writes"
    agent = AgentDefinition.objects.get(slug="writer")
    assert agent.history.count() == 2  # history kept
    assert key_client.delete("/api/v1/agents/writer/").status_code == 204
    assert not AgentDefinition.objects.filter(slug="writer").exists()


def test_bad_agent_input_names_the_field(key_client):
    response = key_client.post(
        "/api/v1/agents/", {"slug": "x", "name": "X", "model_endpoint": "mock/x", "tools": ["rm_rf"]}, format="json"
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and "tools" in error["details"]["fields"]
    assert "rm_rf" in error["message"]
    response = key_client.post(
        "/api/v1/agents/", {"slug": "x", "name": "X", "model_endpoint": "mock/x", "max_iterations": 0}, format="json"
    )
    assert response.status_code == 422 and "max_iterations" in response.json()["error"]["details"]["fields"]
    assert not AgentDefinition.objects.exists()


def test_only_the_owner_may_change_an_agent(key_client, make_agent, other_user):
    make_agent(slug="shared")  # shared agents: visible to all, editable by staff only
    response = key_client.patch("/api/v1/agents/shared/", {"name": "Mine now"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "POLICY_DENIED"


@pytest.mark.runs
def test_start_a_run_and_wait_for_it(key_client, agent, scripted, issued_key):
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "2**10"}}])
    scripted.queue_response(content="1024 <script>alert(1)</script>")
    response = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "2**10?", "wait": True}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "succeeded" and body["output"].startswith("1024")
    assert "<script>" not in body["output_html"] and "&lt;script&gt;" in body["output_html"]
    assert body["trace_url"] == f"/dashboard/traces/{body['trace_id']}/"
    assert body["llm_calls"] == 2 and body["total_tokens"] > 0
    run = Run.objects.get(id=body["id"])
    assert run.api_key_id == issued_key.api_key.id

    status = key_client.get(f"/api/v1/runs/{body['id']}/").json()
    assert status["status"] == "succeeded"
    events = key_client.get(f"/api/v1/runs/{body['id']}/events/?after=2").json()["events"]
    assert events[0]["seq"] == 3 and events[-1]["type"] == "final"
    messages = key_client.get(f"/api/v1/conversations/{body['conversation']}/messages/").json()["results"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "&lt;script&gt;" in messages[1]["html"]


@pytest.mark.runs
def test_start_without_wait_returns_202_with_the_run_id(key_client, agent, scripted):
    response = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "hello"}, format="json")
    assert response.status_code == 202
    assert Run.objects.filter(id=response.json()["id"]).exists()


def test_run_errors(key_client, agent, make_agent, scripted, other_user):
    response = key_client.post("/api/v1/agents/nope/runs/", {"input": "hello"}, format="json")
    assert response.json()["error"]["code"] == "AGENT_NOT_FOUND"
    make_agent(slug="off", enabled=False)
    response = key_client.post("/api/v1/agents/off/runs/", {"input": "hello"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "AGENT_DISABLED"
    response = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": ""}, format="json")
    assert response.status_code == 422 and "input" in response.json()["error"]["details"]["fields"]
    response = key_client.get("/api/v1/runs/not-a-uuid/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "RUN_NOT_FOUND"
    response = key_client.get("/api/v1/runs/00000000-0000-0000-0000-000000000000/events/?after=x")
    assert response.json()["error"]["code"] == "RUN_NOT_FOUND"


@pytest.mark.runs
def test_a_run_that_fails_reports_its_code(key_client, agent, scripted):
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"nope": 1}}])
    body = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "x", "wait": True}, format="json").json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "TOOL_ARGUMENTS_INVALID" and "expression" in body["error"]["message"]


@pytest.mark.runs
def test_other_users_cannot_see_my_runs_or_conversations(key_client, agent, scripted, other_user):
    from rest_framework.test import APIClient

    body = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "x", "wait": True}, format="json").json()
    other = APIClient()
    other.force_authenticate(other_user)
    assert other.get(f"/api/v1/runs/{body['id']}/").json()["error"]["code"] == "RUN_NOT_FOUND"
    response = other.get(f"/api/v1/conversations/{body['conversation']}/messages/")
    assert response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"
    response = other.post(
        f"/api/v1/agents/{agent.slug}/runs/", {"input": "x", "conversation_id": body["conversation"]}, format="json"
    )
    assert response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"


@pytest.mark.runs
def test_cancel_a_finished_run_is_refused(key_client, agent, scripted):
    body = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "x", "wait": True}, format="json").json()
    response = key_client.post(f"/api/v1/runs/{body['id']}/cancel/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "RUN_NOT_CANCELLABLE"


@pytest.mark.runs
def test_clear_conversation(key_client, agent, scripted):
    body = key_client.post(f"/api/v1/agents/{agent.slug}/runs/", {"input": "x", "wait": True}, format="json").json()
    response = key_client.post(f"/api/v1/conversations/{body['conversation']}/clear/")
    assert response.json()["deleted"] == 2
    assert key_client.get(f"/api/v1/conversations/{body['conversation']}/messages/").json()["count"] == 0


def test_health_of_a_mock_agent_and_of_an_unconfigured_one(key_client, agent, make_agent):
    body = key_client.get(f"/api/v1/agents/{agent.slug}/health/").json()
    assert body["healthy"] is True and body["provider"] == "mock"
    make_agent(slug="ghost", model_endpoint="no-such-endpoint")
    body = key_client.get("/api/v1/agents/ghost/health/").json()
    assert body["healthy"] is False and body["error"]["code"] == "MODEL_NOT_FOUND"


def test_tools_are_listed_with_their_schema(key_client):
    tools = {t["name"]: t for t in key_client.get("/api/v1/tools/").json()}
    assert tools["calculator"]["parameters"]["required"] == ["expression"]


def test_anonymous_requests_are_refused(api_client, agent):
    response = api_client.get("/api/v1/agents/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"


def test_a_user_sees_shared_own_and_team_agents_once_each(key_client, user, other_user):
    from agent_platform.accounts.models import Team
    from agents.services import agent_create

    mine, theirs = Team.objects.create(name="mine"), Team.objects.create(name="theirs")
    also_mine = Team.objects.create(name="also mine")
    mine.members.add(user, other_user)
    also_mine.members.add(user)
    theirs.members.add(other_user)
    base = {"name": "A", "model_endpoint": "mock/x"}
    agent_create(data={**base, "slug": "shared"})
    agent_create(data={**base, "slug": "own"}, owner=user)
    agent_create(data={**base, "slug": "team"}, team=mine)
    agent_create(data={**base, "slug": "other-team"}, team=theirs)
    agent_create(data={**base, "slug": "bobs"}, owner=other_user)

    listed = [a["slug"] for a in key_client.get("/api/v1/agents/").json()["results"]]
    assert sorted(listed) == ["own", "shared", "team"]
    assert key_client.get("/api/v1/agents/other-team/").status_code == 404
    assert key_client.get("/api/v1/agents/bobs/").status_code == 404
