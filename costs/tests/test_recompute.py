"""Recomputing costs after a price correction, for a date range and optional provider, model and agent: from the API
(staff), `manage.py recompute_costs` and an admin page, all through `cost_records_recompute`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agent_platform.api.errors import ValidationFailed
from costs.models import CostRecord, Price, UsageDaily
from costs.services import cost_records_recompute, price_save

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def record(name: str, at: datetime, *, provider="acme", model="acme/a", agent_id=1, agent_slug="support") -> CostRecord:
    return CostRecord.objects.create(
        attempt_id=name,
        created_at=at,
        provider=provider,
        model=model,
        agent_id=agent_id,
        agent_slug=agent_slug,
        input_tokens=1_000_000,
        unpriced=True,
    )


@pytest.fixture
def unpriced():
    """Records of models that had no price; then the price is added, effective long before them."""
    records = {
        "a": record("a", DAY + timedelta(hours=1)),
        "b": record("b", DAY + timedelta(hours=2), model="acme/b", agent_id=2, agent_slug="sales"),
        "c": record("c", DAY + timedelta(hours=3), provider="other", model="acme/a"),
        "late": record("late", DAY + timedelta(days=1, hours=1)),
    }
    for provider in ("acme", "other"):
        price_save(
            price=Price(
                provider=provider,
                model="acme/*",
                input_per_million=Decimal("2"),
                effective_from=DAY - timedelta(days=30),
            )
        )
    return records


def costs() -> dict[str, Decimal]:
    return dict(CostRecord.objects.values_list("attempt_id", "cost"))


def staff_client(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


# --- the service ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_records_in_the_range_that_match_the_filters_are_repriced(unpriced):
    end = DAY + timedelta(days=1)
    assert cost_records_recompute(start=DAY, end=end, provider="acme", model="acme/a") == {
        "records": 1, "changed": 1, "days": 1,
    }  # fmt: skip
    assert costs() == {"a": Decimal("2"), "b": 0, "c": 0, "late": 0}
    assert cost_records_recompute(start=DAY, end=end, agent="sales")["changed"] == 1  # by slug
    assert cost_records_recompute(start=DAY, end=end, agent="1")["changed"] == 1  # by id: "c" ("a" is done)
    assert costs() == {"a": Decimal("2"), "b": Decimal("2"), "c": Decimal("2"), "late": 0}
    assert UsageDaily.objects.filter(day=DAY.date()).count() == 3, "the day's rollups are rebuilt"
    assert not CostRecord.objects.get(attempt_id="a").unpriced


@pytest.mark.django_db
def test_the_service_refuses_an_empty_or_reversed_range():
    with pytest.raises(ValidationFailed) as reversed_range:
        cost_records_recompute(start=DAY, end=DAY)
    assert reversed_range.value.details["field"] == "end"
    with pytest.raises(ValidationFailed) as naive:
        cost_records_recompute(start=datetime(2026, 3, 1), end=DAY)
    assert naive.value.details["field"] == "start"


# --- the API ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_recompute_a_range_for_one_model_through_the_api(unpriced, admin_user):
    response = staff_client(admin_user).post(
        "/api/v1/costs/recompute/",
        {"start": "2026-03-10", "end": "2026-03-11T00:00:00Z", "model": "acme/b"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {"records": 1, "changed": 1, "days": 1}
    assert costs() == {"a": 0, "b": Decimal("2"), "c": 0, "late": 0}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end": "2026-03-11"}, "start"),
        ({"start": "2026-03-10"}, "end"),
        ({"start": "yesterday", "end": "2026-03-11"}, "start"),
        ({"start": "2026-03-11", "end": "2026-03-10"}, "end"),
        ({"start": "2026-03-10", "end": "2026-03-11", "model": "m" * 201}, "model"),
    ],
)
def test_bad_input_is_refused_with_a_code_and_the_field(unpriced, admin_user, body, field):
    response = staff_client(admin_user).post("/api/v1/costs/recompute/", body, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and list(error["details"]["fields"]) == [field], error
    assert costs() == {"a": 0, "b": 0, "c": 0, "late": 0}, "nothing is repriced"


@pytest.mark.django_db
def test_only_staff_may_recompute(unpriced, key_client, api_client):
    body = {"start": "2026-03-10", "end": "2026-03-11"}
    response = key_client.post("/api/v1/costs/recompute/", body, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "POLICY_DENIED"
    assert api_client.post("/api/v1/costs/recompute/", body, format="json").status_code == 401
    assert costs()["a"] == 0


# --- the command ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_recomputes_a_range_with_filters(unpriced):
    out = StringIO()
    call_command("recompute_costs", "--start", "2026-03-10", "--end", "2026-03-12", "--provider", "acme", stdout=out)
    assert "recomputed 3 records" in out.getvalue() and "3 changed" in out.getvalue()
    assert costs() == {"a": Decimal("2"), "b": Decimal("2"), "c": 0, "late": Decimal("2")}


@pytest.mark.django_db
def test_the_command_names_the_bad_argument(unpriced):
    with pytest.raises(CommandError, match="--end"):
        call_command("recompute_costs", "--start", "2026-03-11", "--end", "2026-03-10")
    with pytest.raises(CommandError, match="--start"):
        call_command("recompute_costs", "--start", "last week", "--end", "2026-03-10")
    assert costs()["a"] == 0


# --- the admin --------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_recomputes_a_date_range_from_its_own_page(unpriced, admin_client):
    changelist = admin_client.get("/admin/costs/costrecord/")
    assert "/admin/costs/costrecord/recompute/" in changelist.content.decode()
    assert admin_client.get("/admin/costs/costrecord/recompute/").status_code == 200
    response = admin_client.post(
        "/admin/costs/costrecord/recompute/",
        {"start": "2026-03-10", "end": "2026-03-11", "provider": "", "model": "", "agent": "support"},
        follow=True,
    )
    assert response.status_code == 200 and "Recomputed 2 records" in response.content.decode()
    assert costs() == {"a": Decimal("2"), "b": 0, "c": Decimal("2"), "late": 0}


@pytest.mark.django_db
def test_the_admin_page_shows_a_reversed_range_as_an_error_on_the_field(unpriced, admin_client):
    response = admin_client.post("/admin/costs/costrecord/recompute/", {"start": "2026-03-11", "end": "2026-03-10"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"end": ["Must be after the start."]}
    assert costs()["a"] == 0


@pytest.mark.django_db
def test_the_admin_page_is_for_staff_only(client, user):
    client.force_login(user)
    response = client.get("/admin/costs/costrecord/recompute/")
    assert response.status_code == 302 and "/login/" in response["Location"]
