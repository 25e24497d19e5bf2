"""A team B member tries to reach team A's private prompt through experiments: as a variant's prompt or an LLM
judge's rubric. Refused at creation as if the prompt did not exist (naming the field); an experiment whose prompt
became unreadable later fails its items without showing the prompt or its variables."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from agent_platform.accounts.services import team_create
from agent_platform.api.errors import PlatformError
from agent_platform.llm.mock import mock_provider_for
from experiments import services
from experiments.models import Experiment, ExperimentResult, ResultStatus
from prompts.services import prompt_create, prompt_update
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SECRET = "Team A secret rubric: {{ launch_code }} {{ output }}"


@pytest.fixture
def world():
    author = UserFactory(username="ann")
    a_member = UserFactory(username="amy")
    b_member = UserFactory(username="bert")
    team_a = team_create(name="team-a", members=[author, a_member])
    team_b = team_create(name="team-b", members=[b_member])
    prompt_create(name="a-secret", text=SECRET, team=team_a, user=author, labels=["staging"])
    return {"a_member": a_member, "b_member": b_member, "team_a": team_a, "team_b": team_b}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def leaks(*texts) -> bool:
    blob = " ".join(texts)
    return "launch_code" in blob or "Team A secret" in blob


def dataset_of(user):
    items = [{"input": {"launch_code": "0000"}, "expected": "x"}, {"input": {"launch_code": "1111"}, "expected": "y"}]
    return services.dataset_create(name=f"ds-{user.username}", owner=user, items=items)


def body(dataset, **overrides):
    return {
        "name": "steal",
        "dataset": dataset.id,
        "variants": [{"name": "A", "endpoint": "mock/exp-steal", "prompt_name": "a-secret"}],
        **overrides,
    }


@pytest.mark.parametrize(
    ("variant_extra", "evaluators", "field"),
    [
        ({}, [], "variants[0].prompt_name"),
        ({"prompt_version": 1}, [], "variants[0].prompt_name"),  # not "prompt_version": no hint that v1 exists
        ({"prompt_label": "staging"}, [], "variants[0].prompt_name"),
        (
            None,
            [{"type": "llm_judge", "prompt": "a-secret", "endpoint": "mock/exp-judge"}],
            "evaluators[0].prompt",
        ),
    ],
)
def test_team_b_cannot_create_an_experiment_naming_team_a_prompt(world, variant_extra, evaluators, field):
    attacker = client_for(world["b_member"])
    dataset = dataset_of(world["b_member"])
    variant = {"name": "A", "endpoint": "mock/exp-steal"}
    if variant_extra is not None:
        variant.update(prompt_name="a-secret", **variant_extra)
    r = attacker.post("/api/v1/experiments/", body(dataset, variants=[variant], evaluators=evaluators), format="json")
    assert r.status_code == 404, r.content
    error = r.json()["error"]
    assert error["code"] == "PROMPT_NOT_FOUND" and error["details"]["field"] == field
    # the same message as for a prompt that does not exist
    missing_variant = dict(variant, prompt_name="no-such-prompt") if variant_extra is not None else variant
    missing_evaluators = [dict(e, prompt="no-such-prompt") for e in evaluators]
    missing = attacker.post(
        "/api/v1/experiments/",
        body(dataset, variants=[missing_variant], evaluators=missing_evaluators),
        format="json",
    ).json()["error"]
    assert missing["code"] == "PROMPT_NOT_FOUND"
    assert error["message"].replace("a-secret", "X") == missing["message"].replace("no-such-prompt", "X")
    assert not leaks(r.content.decode())
    assert not Experiment.objects.exists()
    assert mock_provider_for("mock/exp-steal").calls == []


def test_team_a_may_use_its_own_prompt(world):
    member = client_for(world["a_member"])
    r = member.post("/api/v1/experiments/", body(dataset_of(world["a_member"])), format="json")
    assert r.status_code == 201, r.content


def test_an_experiment_of_team_b_may_not_use_team_a_prompt_even_if_its_owner_may(world):
    """The experiment's results are shown to its team: every reader must be allowed to read the prompt."""
    both = UserFactory(username="both")
    world["team_a"].members.add(both)
    world["team_b"].members.add(both)
    with pytest.raises(PlatformError) as err:
        services.experiment_create(
            name="cross",
            dataset=dataset_of(both),
            variants=[{"name": "A", "endpoint": "mock/exp-steal", "prompt_name": "a-secret"}],
            owner=both,
            team=world["team_b"],
        )
    assert err.value.code == "PROMPT_NOT_FOUND" and err.value.details["field"] == "variants[0].prompt_name"
    assert not Experiment.objects.exists()


@pytest.mark.runs
def test_an_experiment_whose_prompt_became_unreadable_fails_its_items_without_leaking(
    world, admin_user, django_capture_on_commit_callbacks, until_finished
):
    owner = world["a_member"]
    experiment = services.experiment_create(
        name="was-fine",
        dataset=dataset_of(owner),
        variants=[{"name": "A", "endpoint": "mock/exp-steal", "prompt_name": "a-secret"}],
        evaluators=[{"type": "llm_judge", "name": "judge", "prompt": "a-secret", "endpoint": "mock/exp-judge"}],
        owner=owner,
    )
    prompt_update(name="a-secret", team=team_create(name="team-c", members=[]), user=admin_user)

    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(experiment=experiment)
    until_finished(experiment.pk)

    rows = list(ExperimentResult.objects.filter(experiment=experiment))
    assert len(rows) == 2 and all(r.status == ResultStatus.FAILED for r in rows)
    assert {r.error_code for r in rows} == {"PROMPT_NOT_FOUND"}
    assert {r.error_message for r in rows} == {"No prompt named 'a-secret'."}
    assert mock_provider_for("mock/exp-steal").calls == [] and mock_provider_for("mock/exp-judge").calls == []
    stored = json.dumps(
        list(ExperimentResult.objects.filter(experiment=experiment).values("output", "error_message", "scores"))
    )
    assert not leaks(stored)
    report = client_for(owner).get(f"/api/v1/experiments/{experiment.pk}/report/")
    # (the items' own inputs are the owner's data and name `launch_code`; the prompt's text must not appear)
    assert report.status_code == 200 and b"Team A secret" not in report.content


@pytest.mark.runs
def test_an_llm_judge_reads_its_rubric_as_the_experiment_owner(
    world, admin_user, django_capture_on_commit_callbacks, until_finished
):
    """The variant's prompt is readable, the judge's rubric no longer is: the judge fails, naming nothing of it."""
    owner = world["a_member"]
    prompt_create(name="plain", text="Say {{ launch_code }}", user=owner)
    experiment = services.experiment_create(
        name="judged",
        dataset=dataset_of(owner),
        variants=[{"name": "A", "endpoint": "mock/exp-answer", "prompt_name": "plain"}],
        evaluators=[{"type": "llm_judge", "name": "judge", "prompt": "a-secret", "endpoint": "mock/exp-judge"}],
        owner=owner,
    )
    prompt_update(name="a-secret", team=team_create(name="team-c", members=[]), user=admin_user)
    mock_provider_for("mock/exp-answer").queue_responses(["0000", "1111"])

    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(experiment=experiment)
    until_finished(experiment.pk)

    rows = list(ExperimentResult.objects.filter(experiment=experiment))
    assert [r.status for r in rows] == [ResultStatus.COMPLETED, ResultStatus.COMPLETED]
    for row in rows:
        assert row.scores["judge"]["score"] is None and row.scores["judge"]["passed"] is False
        assert "No prompt named 'a-secret'" in row.scores["judge"]["reason"]
        assert not leaks(json.dumps(row.scores))
    assert mock_provider_for("mock/exp-judge").calls == []
