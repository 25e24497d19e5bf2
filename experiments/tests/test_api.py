"""The experiments API: create with errors naming the field, start (202) / 409, results, report, CSV, human scores.
The experiment of the `runs` test runs on the worker on the full stack."""

import csv
import io

import pytest
from django.utils import timezone

from agent_platform.llm.mock import mock_provider_for
from experiments import services
from experiments.models import Experiment, ExperimentStatus, HumanScore

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(user):
    items = [{"messages": [{"role": "user", "content": f"say {i}"}], "expected": str(i)} for i in range(1, 7)]
    return services.dataset_create(name="api-exp", owner=user, items=items)


def body(ds, **overrides):
    data = {
        "name": "compare",
        "dataset": ds.id,
        "concurrency": 2,
        "evaluators": [{"type": "exact_match", "name": "accuracy"}, {"type": "length", "max": 3}],
        "variants": [{"name": "base", "endpoint": "mock/api-a"}, {"name": "new", "endpoint": "mock/api-b"}],
        "baseline": "base",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"variants": []}, "VALIDATION_ERROR", "variants"),
        ({"variants": [{"name": "x"}]}, "VALIDATION_ERROR", "variants"),
        ({"baseline": "nope"}, "VALIDATION_ERROR", "baseline"),
        ({"evaluators": [{"type": "regex", "pattern": "("}]}, "VALIDATION_ERROR", "evaluators[0].pattern"),
        ({"evaluators": [{"type": "telepathy"}]}, "EVALUATOR_NOT_FOUND", "evaluators[0].type"),
        ({"concurrency": 0}, "VALIDATION_ERROR", "concurrency"),
        ({"dataset": 999999}, "DATASET_NOT_FOUND", "dataset"),
        (
            {"variants": [{"name": "a", "endpoint": "no-such-endpoint"}], "baseline": None},
            "MODEL_NOT_FOUND",
            "variants[0].endpoint",
        ),
        (
            {"evaluators": [{"type": "llm_judge", "prompt": "no-rubric", "endpoint": "mock/judge"}]},
            "PROMPT_NOT_FOUND",
            "evaluators[0].prompt",
        ),
        (
            {"variants": [{"name": "a", "endpoint": "mock/x", "prompt_name": "nope"}], "baseline": None},
            "PROMPT_NOT_FOUND",
            "variants[0].prompt_name",
        ),
        (
            {"variants": [{"name": "a", "endpoint": "mock/x"}, {"name": "a", "endpoint": "mock/y"}]},
            "VALIDATION_ERROR",
            "variants[1].name",
        ),
    ],
)
def test_create_rejects_bad_input_naming_the_field(key_client, dataset, overrides, code, field):
    response = key_client.post("/api/v1/experiments/", body(dataset, **overrides), format="json")
    assert response.status_code in (404, 422), response.json()
    error = response.json()["error"]
    assert error["code"] == code
    named = error["details"].get("field") or next(iter(error["details"].get("fields", {})), None)
    assert named is not None and named.startswith(field)
    assert not Experiment.objects.exists()


@pytest.mark.runs
def test_create_start_results_report_csv_and_scores(
    key_client, dataset, django_capture_on_commit_callbacks, until_finished
):
    mock_provider_for("mock/api-a").queue_responses(["1", "2", "x", "x", "x", "x"])
    mock_provider_for("mock/api-b").queue_responses(["1", "2", "3", "4", "5", "x"])
    response = key_client.post("/api/v1/experiments/", body(dataset, concurrency=1), format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["status"] == "draft" and created["progress"]["total"] == 12 and created["baseline"] == "base"
    experiment_id = created["id"]

    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post(f"/api/v1/experiments/{experiment_id}/start/")
    assert response.status_code == 202, response.json()
    until_finished(experiment_id)
    detail = key_client.get(f"/api/v1/experiments/{experiment_id}/").json()
    assert detail["status"] == "completed"
    assert detail["progress"] == {
        "total": 12, "pending": 0, "running": 0, "completed": 12, "failed": 0, "finished": 12, "percent": 100.0
    }  # fmt: skip

    results = key_client.get(f"/api/v1/experiments/{experiment_id}/results/?variant=new").json()
    assert results["count"] == 6
    assert [r["output"] for r in results["results"]] == ["1", "2", "3", "4", "5", "x"]

    report = key_client.get(f"/api/v1/experiments/{experiment_id}/report/?items=2").json()
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["base"]["scores"]["accuracy"]["mean"] == pytest.approx(2 / 6, abs=1e-4)
    assert variants["new"]["scores"]["accuracy"]["mean"] == pytest.approx(5 / 6, abs=1e-4)
    assert variants["new"]["scores"]["length"]["pass_rate"] == 1.0
    (comparison,) = report["comparisons"]
    assert comparison["metrics"]["accuracy"]["mcnemar"]["b_only"] == 3
    assert comparison["metrics"]["accuracy"]["mcnemar"]["p_value"] == pytest.approx(0.25)  # 2 * 0.5**3
    assert comparison["metrics"]["accuracy"]["verdict"] == "no detectable difference on accuracy (p = 0.25)"
    assert len(report["items"]) == 2 and report["items_total"] == 6

    response = key_client.get(f"/api/v1/experiments/{experiment_id}/report/?items=lots")
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "items"

    response = key_client.get(f"/api/v1/experiments/{experiment_id}/report/csv/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 12
    assert rows[0]["variant"] == "base" and rows[0]["accuracy.passed"] == "True" and rows[0]["output"] == "1"

    result_id = results["results"][0]["id"]
    response = key_client.post(
        f"/api/v1/experiments/{experiment_id}/results/{result_id}/scores/",
        {"kind": "rating", "value": 4},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["result"] == result_id
    response = key_client.post(
        f"/api/v1/experiments/{experiment_id}/results/{result_id}/scores/",
        {"kind": "rating", "value": 9},
        format="json",
    )
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "value"
    report = key_client.get(f"/api/v1/experiments/{experiment_id}/report/").json()
    assert {v["name"]: v["human"]["mean_rating"] for v in report["variants"]} == {"base": None, "new": 4.0}


def test_double_start_is_409_and_cancel_of_a_finished_one_is_409(key_client, user, dataset):
    experiment = services.experiment_create(
        name="e", dataset=dataset, variants=[{"name": "a", "endpoint": "mock/api-a"}], owner=user
    )
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING, heartbeat_at=timezone.now())
    response = key_client.post(f"/api/v1/experiments/{experiment.id}/start/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "EXPERIMENT_ALREADY_RUNNING"
    response = key_client.post(f"/api/v1/experiments/{experiment.id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    response = key_client.post(f"/api/v1/experiments/{experiment.id}/cancel/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "CONFLICT"


def test_other_users_do_not_see_experiments(key_client, other_user, dataset):
    other_ds = services.dataset_create(name="other", owner=other_user, items=[{"input": {"q": "1"}}])
    experiment = services.experiment_create(
        name="theirs", dataset=other_ds, variants=[{"name": "a", "endpoint": "mock/x"}], owner=other_user
    )
    response = key_client.get(f"/api/v1/experiments/{experiment.id}/report/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "EXPERIMENT_NOT_FOUND"
    assert key_client.get("/api/v1/experiments/").json()["count"] == 0


def test_human_scores_on_traces_and_evaluator_catalog(key_client, user, other_user):
    trace_id = _own_trace(user)
    theirs = _own_trace(other_user)
    response = key_client.post("/api/v1/scores/", {"trace_id": theirs, "kind": "thumbs", "value": 1}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "TRACE_NOT_FOUND"
    response = key_client.post(
        "/api/v1/scores/", {"trace_id": trace_id, "kind": "thumbs", "label": "up"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["value"] == 1.0
    response = key_client.post("/api/v1/scores/", {"trace_id": trace_id, "kind": "label", "label": ""}, format="json")
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "label"
    response = key_client.post("/api/v1/scores/", {"kind": "thumbs", "value": 1}, format="json")
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "trace_id"
    response = key_client.post(
        "/api/v1/scores/", {"trace_id": "zz-not-hex", "kind": "thumbs", "value": 1}, format="json"
    )
    assert response.status_code == 422
    listed = key_client.get(f"/api/v1/scores/?trace_id={trace_id}").json()
    assert listed["count"] == 1 and HumanScore.objects.count() == 1
    catalog = {e["type"]: e for e in key_client.get("/api/v1/evaluators/").json()}
    assert {"exact_match", "json_schema", "llm_judge", "numeric", "regex"} <= set(catalog)
    assert catalog["llm_judge"]["uses_llm"] is True and catalog["regex"]["options"]["pattern"] is None


@pytest.mark.background
@pytest.mark.django_db(transaction=True)
def test_on_the_embedded_default_start_returns_at_once_and_the_run_finishes_in_the_background(key_client, user):
    import time

    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("in-memory shared-cache SQLite locks tables without waiting; the embedded default uses a file")

    mock_provider_for("mock/bg").latency = 0.05
    ds = services.dataset_create(
        name="bg", owner=user, items=[{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(20)]
    )
    experiment = services.experiment_create(
        name="bg", dataset=ds, concurrency=2, variants=[{"name": "A", "endpoint": "mock/bg"}], owner=user
    )
    response = key_client.post(f"/api/v1/experiments/{experiment.id}/start/")
    assert response.status_code == 202
    assert response.json()["status"] in ("queued", "running")
    assert response.json()["progress"]["finished"] < 20  # 20 × 50 ms / 2 = 0.5 s of calls still to make
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = key_client.get(f"/api/v1/experiments/{experiment.id}/").json()
        if detail["status"] == "completed":
            break
        time.sleep(0.05)
    assert detail["status"] == "completed" and detail["progress"]["completed"] == 20


def _own_trace(user) -> str:
    """A trace that belongs to `user` (scores may only be given on traces the scorer can see)."""
    from agent_platform.observability.context import bind_caller
    from agent_platform.observability.hooks import SpanKind, hub
    from agent_platform.observability.spans import start_span

    with bind_caller(user_id=user.id), start_span(kind=SpanKind.CUSTOM, name="scored") as span:
        pass
    hub.flush()
    return span.trace_id
