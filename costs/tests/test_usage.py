from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agent_platform.observability.context import Caller, bind_caller
from agent_platform.observability.hooks import SpanKind, hub
from agent_platform.observability.spans import start_span
from costs.models import CostRecord, UsageDaily
from costs.selectors import get_usage_report
from costs.services import usage_rollup_build, usage_rollups_refresh
from tests.support.sinks import llm_record

pytestmark = pytest.mark.django_db


def today_start() -> datetime:
    now = timezone.now().astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def record(at: datetime, *, model="gpt-4o", user_id=1, agent_id=1, api_key_id=None, cost="1", status="ok", tokens=10):
    return CostRecord(
        attempt_id=f"a{CostRecord.objects.count()}-{at.timestamp()}-{model}-{user_id}-{status}",
        created_at=at,
        provider="openai",
        model=model,
        user_id=user_id,
        agent_id=agent_id,
        api_key_id=api_key_id,
        input_tokens=tokens,
        output_tokens=tokens,
        cost=Decimal(cost),
        status=status,
    )


@pytest.fixture
def history():
    """Three past days and today: gpt-4o for user 1, claude for user 2."""
    base = today_start()
    rows = []
    for days_ago in (3, 2, 1, 0):
        day = base - timedelta(days=days_ago)
        rows += [
            record(day + timedelta(hours=1), model="gpt-4o", user_id=1, cost="1.5"),
            record(day + timedelta(hours=2), model="gpt-4o", user_id=1, cost="0.5", status="error"),
            record(day + timedelta(minutes=5), model="claude", user_id=2, agent_id=2, api_key_id=7, cost="0.25"),
        ]
    CostRecord.objects.bulk_create(rows)
    return base


def test_report_by_model_and_day_reads_rollups_for_past_days_and_raw_rows_for_today(history):
    start, end = history - timedelta(days=3), history + timedelta(days=1)
    raw = get_usage_report(start=start, end=end, group_by="model")
    assert raw.rollup_days == 0
    built = usage_rollups_refresh(days_back=3)
    assert len(built) == 3 and UsageDaily.objects.count() == 6
    rolled = get_usage_report(start=start, end=end, group_by="model")
    assert rolled.rollup_days == 3
    assert rolled.totals == raw.totals and rolled.groups == raw.groups and rolled.series == raw.series
    assert rolled.totals["calls"] == 12 and rolled.totals["errors"] == 4 and rolled.totals["cost"] == Decimal("9")
    assert [g["key"] for g in rolled.groups] == ["gpt-4o", "claude"]
    assert rolled.groups[0]["cost"] == Decimal("8") and rolled.groups[0]["total_tokens"] == 160
    days = sorted({s["bucket"] for s in rolled.series})
    assert days == [(history - timedelta(days=d)).date().isoformat() for d in (3, 2, 1, 0)]


def test_late_records_for_a_rolled_up_day_appear_after_the_next_rollup(history):
    usage_rollups_refresh(days_back=3)
    yesterday = history - timedelta(days=1)
    CostRecord.objects.bulk_create([record(yesterday + timedelta(hours=23), cost="10")])
    report = lambda: get_usage_report(start=yesterday, end=history, group_by="day")  # noqa: E731
    assert report().totals["cost"] == Decimal("2.25")  # the rollup is stale until rebuilt
    usage_rollup_build(day=yesterday.date())
    assert report().totals["cost"] == Decimal("12.25")


def test_partial_days_at_the_edges_use_raw_rows(history):
    usage_rollups_refresh(days_back=3)
    start = history - timedelta(days=2) + timedelta(hours=1, minutes=30)  # after 01:00 that day
    report = get_usage_report(start=start, end=history, group_by="day")
    # that day: only the 02:00 record (0.5); the day after: everything (2.25)
    assert report.totals["cost"] == Decimal("2.75")


@pytest.mark.parametrize(
    ("group_by", "keys"),
    [("provider", ["openai"]), ("user", [1, 2]), ("agent", [1, 2]), ("api_key", [None, 7])],
)
def test_group_by_dimensions(history, group_by, keys):
    report = get_usage_report(start=history - timedelta(days=3), end=history + timedelta(days=1), group_by=group_by)
    assert sorted(g["key"] for g in report.groups if g["key"] is not None) == [k for k in keys if k is not None]


def test_hourly_buckets(history):
    report = get_usage_report(start=history, end=history + timedelta(days=1), group_by="hour")
    assert [row["bucket"][11:16] for row in report.series] == ["00:00", "01:00", "02:00"]


def test_user_restriction(history):
    usage_rollups_refresh(days_back=3)
    report = get_usage_report(start=history - timedelta(days=3), end=history + timedelta(days=1), user_id=2)
    assert [g["key"] for g in report.groups] == ["claude"] and report.totals["calls"] == 4


def test_usage_api(key_client, user, history):
    CostRecord.objects.filter(user_id=1).update(user_id=user.pk)
    start = (history - timedelta(days=3)).isoformat()
    end = (history + timedelta(days=1)).isoformat()  # today's records are at 01:00 and 02:00: maybe after now
    response = key_client.get("/api/v1/usage/", {"start": start, "end": end, "group_by": "model"})
    assert response.status_code == 200
    body = response.json()
    assert [g["key"] for g in body["groups"]] == ["gpt-4o"], "a user sees only their own usage"
    assert Decimal(body["totals"]["cost"]) == Decimal("8") and body["currency"] == "USD"
    assert body["series"][0]["bucket"] == (history - timedelta(days=3)).date().isoformat()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "planet"}, "group_by"),
        ({"start": "2026-02-01T00:00Z", "end": "2026-01-01T00:00Z"}, "end"),
        ({"start": "soon"}, "start"),
        ({"bucket": "hour", "start": "2020-01-01T00:00Z"}, "start"),
    ],
)
def test_usage_api_rejects_bad_queries_naming_the_field(key_client, params, field):
    response = key_client.get("/api/v1/usage/", params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert field in error["details"].get("fields", {}) or error["details"].get("field") == field


def test_rollup_task_is_scheduled_and_runs(history):
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from costs.tasks import refresh_usage_rollups

    importlib.import_module("costs.migrations.0002_schedules_and_demo_price").forwards(apps, None)
    assert PeriodicTask.objects.filter(task="costs.refresh_usage_rollups").exists()
    assert PeriodicTask.objects.filter(task="costs.import_prices").exists()
    result = refresh_usage_rollups.apply().get()
    assert len(result["days"]) == 3


def test_overview_page_shows_figures_and_links_to_traces(client, admin_user):
    from costs.models import Budget
    from costs.services import budget_save

    budget_save(budget=Budget(name="nearly spent", scope="user", scope_id=admin_user.pk, limit=Decimal("1")))
    budget_save(budget=Budget(name="plenty left", scope="user", scope_id=admin_user.pk, limit=Decimal("100")))
    Budget.objects.update(spent=Decimal("0.9"))
    with bind_caller(user_id=admin_user.pk, agent_id=4, agent_slug="writer"):
        with start_span(kind=SpanKind.AGENT_RUN, name="writer run"):
            hub.emit_llm_call(llm_record(input_tokens=1000, output_tokens=100, caller=Caller(user_id=admin_user.pk,
                                                                                             agent_id=4)))  # fmt: skip
        with start_span(kind=SpanKind.AGENT_RUN, name="broken run") as broken:
            broken.set_error(code="TOOL_TIMEOUT", message="slow")
    hub.flush()
    client.force_login(admin_user)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="fig-calls">1<' in html
    assert "writer run" in html and "broken run" in html
    assert "nearly spent" in html and "plenty left" not in html
    assert "/dashboard/traces/?status=error" in html
    assert "/dashboard/traces/?model=mock%2Fdemo" in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert client.get("/?range=7d").status_code == 200


def test_usage_page_renders_a_chart_and_reports_bad_input(client, admin_user):
    hub.emit_llm_call(llm_record(caller=Caller(user_id=admin_user.pk)))
    hub.emit_llm_call(llm_record(model="acme/x", provider="acme", caller=Caller(user_id=admin_user.pk)))
    hub.flush()
    client.force_login(admin_user)
    page = client.get("/dashboard/usage/?group_by=model")
    assert page.status_code == 200
    html = page.content.decode()
    assert "mock/demo" in html and "chart-data" in html and "Models without a price" in html
    bad = client.get("/dashboard/usage/?group_by=planet")
    assert bad.status_code == 200 and "group_by" in bad.content.decode()


def test_dashboard_pages_need_login(client):
    for url in ("/", "/dashboard/usage/", "/dashboard/traces/"):
        assert client.get(url).status_code == 302
