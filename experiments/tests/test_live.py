"""The live A/B report: LLM calls made through a split label are traced with their prompt version; the report groups
them by version (experiment traffic excluded) with errors, latency, human scores and sampled evaluator scores, and
states the comparison in words."""

import pytest

from agent_platform.llm.client import complete
from agent_platform.llm.mock import mock_provider_for
from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import hub

pytestmark = pytest.mark.django_db


def test_live_report_compares_versions_of_a_split_label(key_client, user):
    from prompts.selectors import render_prompt, use_prompt
    from prompts.services import label_move, prompt_create, prompt_update

    pytest.importorskip("traces.models")
    prompt_create(name="support", text="v1 {{ q }}")
    prompt_update(name="support", text="v2 {{ q }}")
    label_move(name="support", label="production", version=1, split={"1": 50, "2": 50})
    mock = mock_provider_for("mock/live")
    served = {1: [], 2: []}
    for i in range(60):
        with bind_caller(user_id=user.id, conversation_id=f"conv-{i}"):
            rendered = render_prompt("support", {"q": f"question {i}"})
            if rendered.version == 2 and len(served[2]) % 3 == 0:
                mock.queue_failure("bad_request")  # a third of v2's calls fail
            with use_prompt(rendered):
                try:
                    response = complete(endpoint="mock/live", messages=[{"role": "user", "content": rendered.text}])
                    served[rendered.version].append(response.trace_id)
                except Exception:
                    served[rendered.version].append(None)
    # experiment traffic on the same prompt is not live traffic
    with bind_caller(user_id=user.id, experiment_id=999, prompt_name="support", prompt_version=1):
        complete(endpoint="mock/live", messages=[{"role": "user", "content": "offline"}])
    hub.flush()
    assert served[1] and served[2]
    for trace_id in [t for t in served[1] if t][:5]:
        key_client.post("/api/v1/scores/", {"trace_id": trace_id, "kind": "thumbs", "value": 1}, format="json")

    response = key_client.get("/api/v1/experiments/live/?prompt=support&days=1")
    assert response.status_code == 200, response.json()
    report = response.json()
    versions = {v["version"]: v for v in report["versions"]}
    assert set(versions) == {1, 2}
    assert versions[1]["calls"] == len(served[1]) and versions[1]["errors"] == 0
    assert versions[2]["calls"] == len(served[2]) and versions[2]["errors"] == served[2].count(None)
    assert versions[2]["errors"] >= 8
    assert versions[1]["ab_variants"] == ["v1"] and versions[2]["ab_variants"] == ["v2"]
    assert versions[1]["human"]["thumbs"] == 5 and versions[1]["human"]["thumbs_up_rate"] == 1.0
    assert report["calls"] == len(served[1]) + len(served[2])  # the experiment call is excluded
    (comparison,) = report["comparisons"]
    assert comparison["baseline"] == 1 and comparison["version"] == 2
    assert comparison["metrics"]["error rate"]["p_value"] < 0.01
    assert "v1 is better on error rate, p " in comparison["verdict"]

    response = key_client.post(
        "/api/v1/experiments/live/",
        {"prompt": "support", "days": 1, "evaluators": [{"type": "regex", "pattern": "question", "name": "on_topic"}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    scored = {v["version"]: v["scores"]["on_topic"] for v in response.json()["versions"]}
    assert scored[1]["n"] == len(served[1]) and scored[2]["n"] == len(served[2]) - served[2].count(None)

    response = key_client.get("/api/v1/experiments/live/?days=1")
    assert response.status_code == 422 and "prompt" in response.json()["error"]["details"]["fields"]
    response = key_client.post(
        "/api/v1/experiments/live/", {"prompt": "support", "evaluators": [{"type": "nope"}]}, format="json"
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "EVALUATOR_NOT_FOUND"


def test_other_users_live_traffic_is_not_visible(key_client, other_user):
    with bind_caller(user_id=other_user.id, prompt_name="private", prompt_version=1):
        complete(endpoint="mock/live", messages=[{"role": "user", "content": "secret"}])
    hub.flush()
    report = key_client.get("/api/v1/experiments/live/?prompt=private").json()
    assert report["calls"] == 0 and report["versions"] == []


def test_live_dashboard_page(client, user):
    with bind_caller(user_id=user.id, prompt_name="page-prompt", prompt_version=3):
        complete(endpoint="mock/live", messages=[{"role": "user", "content": "hello"}])
    hub.flush()
    client.force_login(user)
    page = client.get("/dashboard/experiments/live/?prompt=page-prompt")
    assert page.status_code == 200
    assert "v3" in page.content.decode() and "One version only" in page.content.decode()
    assert client.get("/dashboard/experiments/live/?prompt=x&days=zz").status_code == 200
