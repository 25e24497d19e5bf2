"""One rule for putting something in a team, the same in every app: a team that does not exist is 422
VALIDATION_ERROR, a team the caller is not a member of is 403 POLICY_DENIED, both on the `team` field, and nothing
is written."""

import pytest

from agent_platform.accounts.models import Team
from agents.models import AgentDefinition
from prompts.models import Prompt

pytestmark = pytest.mark.django_db

AGENT = {"slug": "teamed", "name": "Teamed", "model_endpoint": "mock/default", "tools": []}


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["details"]["field"] == "team"


@pytest.fixture
def teams(user):
    mine = Team.objects.create(name="mine")
    mine.members.add(user)
    return {"mine": mine, "theirs": Team.objects.create(name="theirs")}


@pytest.mark.parametrize(
    ("path", "body", "model"),
    [("/api/v1/agents/", AGENT, AgentDefinition), ("/api/v1/prompts/", {"name": "teamed", "text": "Hi"}, Prompt)],
)
def test_agents_and_prompts_answer_a_team_the_same_way(key_client, teams, path, body, model):
    refused(key_client.post(path, {**body, "team": teams["theirs"].pk}, format="json"), 403, "POLICY_DENIED")
    missing = key_client.post(path, {**body, "team": 999_999}, format="json")
    assert missing.status_code in (400, 422) and missing.json()["error"]["code"] == "VALIDATION_ERROR"
    details = missing.json()["error"]["details"]
    assert details.get("field") == "team" or "team" in details.get("fields", {}), details
    assert not model.objects.exists()
    created = key_client.post(path, {**body, "team": teams["mine"].pk}, format="json")
    assert created.status_code == 201 and created.json()["team"] == teams["mine"].pk


def test_moving_an_agent_into_a_team_one_is_not_in_is_refused_and_leaves_it_where_it_was(key_client, teams):
    assert key_client.post("/api/v1/agents/", AGENT, format="json").status_code == 201
    moved = key_client.patch("/api/v1/agents/teamed/", {"team": teams["theirs"].pk}, format="json")
    refused(moved, 403, "POLICY_DENIED")
    assert AgentDefinition.objects.get(slug="teamed").team_id is None
