"""Dashboard and admin pages render for a finished experiment; actions and human scores from the page work."""

import pytest

from agent_platform.llm.mock import mock_provider_for, reset_all_mocks
from experiments import services
from experiments.models import HumanScore

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(user, django_capture_on_commit_callbacks):
    reset_all_mocks()
    mock_provider_for("mock/page-a").queue_responses(["yes", "no"])
    dataset = services.dataset_create(
        name="page",
        owner=user,
        items=[{"messages": [{"role": "user", "content": f"q{i}"}], "expected": "yes"} for i in (1, 2)],
    )
    experiment = services.experiment_create(
        name="page-exp",
        dataset=dataset,
        concurrency=1,
        variants=[{"name": "A", "endpoint": "mock/page-a"}, {"name": "B", "endpoint": "mock/page-b"}],
        evaluators=[{"type": "exact_match", "name": "accuracy"}],
        owner=user,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(experiment=experiment)
    yield experiment
    reset_all_mocks()


def test_dashboard_list_and_detail(client, user, finished):
    client.force_login(user)
    page = client.get("/dashboard/experiments/")
    assert page.status_code == 200 and b"page-exp" in page.content and b"4 / 4" in page.content
    page = client.get(f"/dashboard/experiments/{finished.id}/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "B vs A:" in text and "accuracy" in text and "Items side by side" in text
    assert '<meta http-equiv="refresh"' not in text  # finished: no auto-refresh


def test_dashboard_filters_items_where_the_variants_disagree(client, user, finished):
    client.force_login(user)
    # A answered "yes", "no"; B (default mock replies) got neither right: they disagree on item 1 only
    text = client.get(f"/dashboard/experiments/{finished.id}/?only=disagree").content.decode()
    assert "where the variants disagree" in text
    assert 'id="item-' in text and text.count('<tr id="item-') == 1


def test_dashboard_thumbs_and_start_again(client, user, finished):
    client.force_login(user)
    result = finished.results.filter(variant__name="A").order_by("item__position").first()
    response = client.post(
        f"/dashboard/experiments/{finished.id}/results/{result.id}/score/", {"kind": "thumbs", "value": "1"}
    )
    assert response.status_code == 302
    assert HumanScore.objects.get().result_id == result.id
    response = client.post(f"/dashboard/experiments/{finished.id}/start/", follow=True)
    assert response.status_code == 200


def test_other_users_get_404_and_anonymous_is_sent_to_login(client, other_user, finished):
    assert client.get(f"/dashboard/experiments/{finished.id}/").status_code == 302
    client.force_login(other_user)
    assert client.get(f"/dashboard/experiments/{finished.id}/").status_code == 404


def test_admin_pages(client, admin_user, finished):
    client.force_login(admin_user)
    for url in (
        "/admin/experiments/experiment/",
        f"/admin/experiments/experiment/{finished.id}/change/",
        "/admin/experiments/experiment/add/",
        "/admin/experiments/dataset/",
        f"/admin/experiments/dataset/{finished.dataset_id}/change/",
        "/admin/experiments/experimentresult/",
        "/admin/experiments/humanscore/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    page = client.get("/admin/experiments/experiment/").content.decode()
    assert "4/4 (100.0%)" in page


def test_admin_creates_a_dataset_from_an_uploaded_file_and_starts_an_experiment(client, admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from experiments.models import Dataset, Experiment

    client.force_login(admin_user)
    upload = SimpleUploadedFile("rows.jsonl", b'{"q": "a"}\n{"q": "b"}\n')
    management = {
        "items-TOTAL_FORMS": "0",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "0",
        "items-MAX_NUM_FORMS": "1000",
    }
    response = client.post(
        "/admin/experiments/dataset/add/",
        {"name": "uploaded", "version": "1", "description": "", "import_file": upload, **management},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    dataset = Dataset.objects.get(name="uploaded")
    assert dataset.items.count() == 2 and dataset.owner == admin_user
    experiment = services.experiment_create(
        name="via-admin", dataset=dataset, variants=[{"name": "A", "endpoint": "mock/admin"}], owner=admin_user
    )
    response = client.post(
        "/admin/experiments/experiment/",
        {"action": "start_experiments", "_selected_action": [experiment.id]},
    )
    assert response.status_code == 302
    assert Experiment.objects.get(pk=experiment.id).status in ("queued", "completed")


def test_dashboard_scores_own_traces_and_refuses_offsite_redirects(client, user):
    from experiments.tests.test_api import _own_trace

    client.force_login(user)
    trace_id = _own_trace(user)
    response = client.post(
        "/dashboard/experiments/scores/",
        {"trace_id": trace_id, "kind": "rating", "value": "4", "next": f"/dashboard/traces/{trace_id}/"},
    )
    assert response.status_code == 302 and response["Location"] == f"/dashboard/traces/{trace_id}/"
    score = HumanScore.objects.get()
    assert (score.trace_id, score.kind, score.value, score.user) == (trace_id, "rating", 4.0, user)
    response = client.post(
        "/dashboard/experiments/scores/",
        {"trace_id": trace_id, "kind": "rating", "value": "7", "next": "https://evil.example/"},
    )
    assert response["Location"] == "/dashboard/experiments/" and HumanScore.objects.count() == 1
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get("/dashboard/traces/x/")
    request.user = user
    html = render_to_string("experiments/_trace_score_form.html", {"trace_id": trace_id}, request=request)
    assert trace_id in html and 'action="/dashboard/experiments/scores/"' in html


def test_dataset_page_imports_a_file_and_lists_bad_rows(client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    ds = services.dataset_create(name="page-ds", owner=user)
    client.force_login(user)
    response = client.post(
        f"/dashboard/experiments/datasets/{ds.id}/", {"file": SimpleUploadedFile("a.csv", b"q,expected\nhi,there\n")}
    )
    assert response.status_code == 302 and ds.items.count() == 1
    response = client.post(
        f"/dashboard/experiments/datasets/{ds.id}/",
        {"file": SimpleUploadedFile("b.jsonl", b'{"q": "ok"}\n{oops\n')},
    )
    text = response.content.decode()
    assert response.status_code == 200 and "Nothing was imported" in text and "(line)" in text
    assert ds.items.count() == 1
    page = client.get(f"/dashboard/experiments/datasets/{ds.id}/").content.decode()
    assert "there" in page and "Export CSV" in page
    other = services.dataset_create(name="not-mine", owner=None)
    assert client.get(f"/dashboard/experiments/datasets/{other.id}/").status_code == 404


def test_a_draft_experiment_page_and_report_render_without_results(client, user):
    ds = services.dataset_create(name="draft-ds", owner=user, items=[{"input": {"q": "1"}}])
    experiment = services.experiment_create(
        name="draft",
        dataset=ds,
        variants=[{"name": "A", "endpoint": "mock/d"}, {"name": "B", "endpoint": "mock/e"}],
        evaluators=[{"type": "exact_match"}],
        owner=user,
    )
    client.force_login(user)
    page = client.get(f"/dashboard/experiments/{experiment.id}/")
    assert page.status_code == 200 and "Start" in page.content.decode()
    from experiments.report import build_report

    report = build_report(experiment=experiment)
    assert report["progress"]["pending"] == 2 and report["progress"]["finished"] == 0
    assert (
        report["comparisons"][0]["metrics"]["exact_match"]["verdict"] == "not enough paired data to compare exact_match"
    )


def test_admin_creates_an_experiment_with_variants_inline_and_rejects_bad_evaluators(client, admin_user):
    from experiments.models import Experiment

    ds = services.dataset_create(name="admin-exp-ds", owner=admin_user, items=[{"input": {"q": "1"}}])
    client.force_login(admin_user)
    form = {
        "name": "from admin",
        "description": "",
        "dataset": str(ds.id),
        "concurrency": "4",
        "evaluators": '[{"type": "regex", "pattern": "("}]',
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-position": "0",
        "variants-0-name": "A",
        "variants-0-endpoint": "mock/admin-a",
        "variants-0-params": "{}",
        "variants-1-position": "1",
        "variants-1-name": "B",
        "variants-1-endpoint": "mock/admin-b",
        "variants-1-params": '{"temperature": 0}',
    }
    response = client.post("/admin/experiments/experiment/add/", form)
    assert response.status_code == 200 and "evaluators[0].pattern" in response.content.decode()
    assert not Experiment.objects.exists()
    form["evaluators"] = '[{"type": "exact_match"}]'
    response = client.post("/admin/experiments/experiment/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    experiment = Experiment.objects.get()
    assert [v.name for v in experiment.variants.order_by("position")] == ["A", "B"]
    assert experiment.baseline.name == "A" and experiment.owner == admin_user


def test_a_trace_page_has_the_score_buttons_and_shows_the_saved_score(client, user):
    from agent_platform.observability.context import bind_caller
    from agent_platform.observability.hooks import SpanKind, hub
    from agent_platform.observability.spans import start_span

    with bind_caller(user_id=user.pk), start_span(kind=SpanKind.AGENT_RUN, name="answer a question") as span:
        span.set_output({"answer": "42"})
    hub.flush()
    client.force_login(user)
    page = client.get(f"/dashboard/traces/{span.trace_id}/").content.decode()
    assert 'action="/dashboard/experiments/scores/"' in page and f'value="{span.trace_id}"' in page
    response = client.post(
        "/dashboard/experiments/scores/",
        {"trace_id": span.trace_id, "kind": "thumbs", "value": "1", "next": f"/dashboard/traces/{span.trace_id}/"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == f"/dashboard/traces/{span.trace_id}/"
    assert "Score saved." in response.content.decode()
    assert HumanScore.objects.get(trace_id=span.trace_id).value == 1.0
