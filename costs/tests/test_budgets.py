from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.conf import settings
from django.core import mail

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import Caller
from agent_platform.observability.hooks import LLMCallEstimate, hub
from costs.models import Budget, BudgetAlert, BudgetReservation
from costs.services import budget_reserve_for_estimate, budget_save
from tests.support.sinks import llm_record

# mock demo price: 0.50 in / 1.50 out per million → this estimate costs 0.05 + 0.15 = 0.20
ESTIMATE = Decimal("0.2")


def estimate(caller: Caller, attempt_id: str | None = None) -> LLMCallEstimate:
    return LLMCallEstimate(
        attempt_id=attempt_id or secrets.token_hex(8),
        endpoint="mock/demo",
        model="mock/demo",
        provider="mock",
        estimated_input_tokens=100_000,
        max_output_tokens=100_000,
        caller=caller,
    )


def make_budget(**kw) -> Budget:
    defaults = {"name": "alice monthly", "scope": "user", "period": "month", "limit": Decimal("1"),
                "enforcement": "hard", "thresholds": []}  # fmt: skip
    return budget_save(budget=Budget(**{**defaults, **kw}))


def reload(budget: Budget) -> Budget:
    budget.refresh_from_db()
    return budget


@pytest.mark.django_db
def test_hard_budget_reserves_then_settles_to_the_actual_cost(user):
    budget = make_budget(scope_id=user.pk)
    caller = Caller(user_id=user.pk)
    est = estimate(caller)
    hub.before_llm_call(est)
    assert reload(budget).reserved == ESTIMATE
    record = llm_record(input_tokens=100_000, output_tokens=10_000, caller=caller)
    record.attempt_id = est.attempt_id
    hub.emit_llm_call(record)
    hub.flush()
    budget = reload(budget)
    assert budget.reserved == 0 and budget.spent == Decimal("0.065")
    assert not BudgetReservation.objects.exists()


@pytest.mark.django_db
def test_failed_call_releases_its_reservation(user):
    budget = make_budget(scope_id=user.pk)
    caller = Caller(user_id=user.pk)
    est = estimate(caller)
    hub.before_llm_call(est)
    record = llm_record(status="error", caller=caller, billable=False)
    record.attempt_id = est.attempt_id
    hub.emit_llm_call(record)
    hub.flush()
    budget = reload(budget)
    assert budget.reserved == 0 and budget.spent == 0


@pytest.mark.django_db
def test_hard_budget_refuses_a_call_that_would_exceed_it_naming_the_budget(user):
    make_budget(scope_id=user.pk, limit=Decimal("0.5"), name="alice tiny")
    caller = Caller(user_id=user.pk)
    hub.before_llm_call(estimate(caller))
    hub.before_llm_call(estimate(caller))
    with pytest.raises(PlatformError) as exc:
        hub.before_llm_call(estimate(caller))  # 0.4 reserved + 0.2 > 0.5
    assert exc.value.code == "BUDGET_EXCEEDED" and exc.value.status in (402, 429)
    assert "alice tiny" in exc.value.message and exc.value.details["budget"] == "alice tiny"
    # another user's calls are not affected
    hub.before_llm_call(estimate(Caller(user_id=user.pk + 1000)))


@pytest.mark.django_db
def test_every_applicable_scope_is_checked(user):
    make_budget(name="agent cap", scope="agent", scope_id=7, limit=Decimal("0.1"))
    make_budget(name="key cap", scope="api_key", scope_id=3, limit=Decimal("10"))
    with pytest.raises(PlatformError) as exc:
        hub.before_llm_call(estimate(Caller(user_id=user.pk, agent_id=7, api_key_id=3)))
    assert exc.value.details["budget"] == "agent cap"
    assert not BudgetReservation.objects.exists(), "a refusal reserves nothing anywhere"


@pytest.mark.django_db
def test_soft_budget_never_refuses(user):
    make_budget(scope_id=user.pk, limit=Decimal("0.01"), enforcement="soft")
    hub.before_llm_call(estimate(Caller(user_id=user.pk)))
    assert not BudgetReservation.objects.exists()


@pytest.mark.django_db
def test_calls_without_hard_budgets_cost_no_queries(user, django_assert_num_queries):
    make_budget(scope_id=user.pk, enforcement="soft")
    hub.before_llm_call(estimate(Caller(user_id=user.pk)))  # warms the in-process index
    with django_assert_num_queries(0):
        for _ in range(20):
            hub.before_llm_call(estimate(Caller(user_id=user.pk)))


@pytest.mark.django_db
def test_a_new_month_starts_from_zero(user):
    budget = make_budget(scope_id=user.pk, limit=Decimal("0.3"))
    Budget.objects.filter(pk=budget.pk).update(spent=Decimal("0.3"), period_start=datetime(2020, 1, 1, tzinfo=UTC))
    hub.before_llm_call(estimate(Caller(user_id=user.pk)))
    budget = reload(budget)
    assert budget.spent == 0 and budget.reserved == ESTIMATE and budget.period_start.year >= 2026


@pytest.mark.django_db(transaction=True)
async def test_async_callers_are_refused_too(django_user_model):
    from asgiref.sync import sync_to_async

    user = await django_user_model.objects.acreate(username="async-alice")
    await sync_to_async(make_budget)(scope_id=user.pk, limit=Decimal("0.1"))
    with pytest.raises(PlatformError) as exc:
        await hub.abefore_llm_call(estimate(Caller(user_id=user.pk)))
    assert exc.value.code == "BUDGET_EXCEEDED"


@pytest.fixture
def eager_tasks():
    """Alerts are sent by a Celery task: run tasks in-process for these tests, on either stack."""
    from agent_platform.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.django_db
def test_alerts_fire_once_per_threshold_by_mail_and_webhook(user, django_capture_on_commit_callbacks, eager_tasks):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        budget = make_budget(
            scope_id=user.pk,
            enforcement="soft",
            thresholds=[50, 100],
            alert_emails="ops@example.com, cfo@example.com",
            webhook_url=f"http://127.0.0.1:{server.server_port}/hook",
        )
        caller = Caller(user_id=user.pk)

        def spend(input_tokens: int) -> None:  # 0.50 per million input tokens
            with django_capture_on_commit_callbacks(execute=True):
                hub.emit_llm_call(llm_record(input_tokens=input_tokens, output_tokens=0, caller=caller))
                hub.flush()

        spend(1_200_000)  # 0.60 → 60%
        spend(200_000)  # 0.70 → still 60-99%
        assert list(BudgetAlert.objects.values_list("threshold", flat=True)) == [50]
        spend(800_000)  # 1.10 → 110%
        spend(100_000)
        assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 100]
    finally:
        server.shutdown()
    assert reload(budget).spent == Decimal("1.15")
    assert [m.subject for m in mail.outbox] == [
        "Budget 'alice monthly' reached 50%",
        "Budget 'alice monthly' reached 100%",
    ]
    assert mail.outbox[0].to == ["ops@example.com", "cfo@example.com"]
    assert [(h["threshold"], h["budget"]) for h in _Hook.received] == [(50, "alice monthly"), (100, "alice monthly")]
    alert = BudgetAlert.objects.get(threshold=100)
    assert alert.email_sent and alert.webhook_status == "204"


@pytest.mark.django_db
def test_webhook_failure_is_recorded_not_raised(user, django_capture_on_commit_callbacks, eager_tasks):
    budget = make_budget(scope_id=user.pk, enforcement="soft", thresholds=[10], webhook_url="http://127.0.0.1:9/x")
    with django_capture_on_commit_callbacks(execute=True):
        hub.emit_llm_call(llm_record(input_tokens=1_000_000, output_tokens=0, caller=Caller(user_id=user.pk)))
        hub.flush()
    alert = BudgetAlert.objects.get(budget=budget)
    assert alert.webhook_status.startswith("error")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_calls_never_overspend_a_hard_budget(user):
    if not settings.USING_POSTGRES:
        pytest.skip("needs PostgreSQL (row locks); SQLite serializes writers anyway")
    from django.db import connection

    limit = Decimal("2.1")  # room for 10 calls of 0.20 (and a bit)
    budget = make_budget(scope_id=user.pk, limit=limit)
    caller = Caller(user_id=user.pk)
    barrier = threading.Barrier(50)

    def call(i: int) -> bool:
        try:
            barrier.wait()
            try:
                budget_reserve_for_estimate(estimate=estimate(caller, attempt_id=f"attempt-{i}"))
            except PlatformError as exc:
                assert exc.code == "BUDGET_EXCEEDED"
                return False
            # the call ran and cost exactly its estimate
            record = llm_record(input_tokens=100_000, output_tokens=100_000, caller=caller)
            record.attempt_id = f"attempt-{i}"
            from costs.services import cost_record_build, cost_records_write

            cost_records_write(records=[cost_record_build(record)])
            return True
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, range(50)))
    budget = reload(budget)
    assert sum(results) == 10
    assert budget.spent <= budget.limit + ESTIMATE
    assert budget.spent == ESTIMATE * 10 and budget.reserved == 0


@pytest.mark.django_db
def test_budget_api_lists_own_budgets_and_only_staff_create(key_client, api_client, admin_user, user, other_user):
    mine = make_budget(scope_id=user.pk)
    make_budget(name="bob", scope_id=other_user.pk)
    listed = key_client.get("/api/v1/budgets/")
    assert listed.status_code == 200
    assert [b["id"] for b in listed.json()["results"]] == [mine.pk]
    body = {"name": "team cap", "scope": "team", "scope_id": 1, "period": "day", "limit": "5", "enforcement": "hard",
            "thresholds": [80, 100]}  # fmt: skip
    assert key_client.post("/api/v1/budgets/", body, format="json").status_code == 403
    api_client.force_authenticate(admin_user)
    created = api_client.post("/api/v1/budgets/", body, format="json")
    assert created.status_code == 201, created.content
    assert Decimal(created.json()["limit"]) == 5 and Decimal(created.json()["spent"]) == 0
    bad = api_client.post("/api/v1/budgets/", {**body, "limit": "-1"}, format="json")
    assert bad.status_code == 422 and "limit" in bad.json()["error"]["details"]["fields"]
    bad = api_client.post("/api/v1/budgets/", {**body, "scope": "planet"}, format="json")
    assert bad.status_code == 422 and "scope" in bad.json()["error"]["details"]["fields"]
    assert key_client.get(f"/api/v1/budgets/{created.json()['id']}/").status_code == 404
    patched = api_client.patch(f"/api/v1/budgets/{mine.pk}/", {"limit": "3"}, format="json")
    assert patched.status_code == 200 and reload(mine).limit == 3
    assert api_client.delete(f"/api/v1/budgets/{mine.pk}/").status_code == 204
