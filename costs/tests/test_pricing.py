from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import hub
from costs.models import CostRecord, Price
from costs.pricing import PriceRow, Tokens, compute_cost, match_price
from costs.services import cost_records_recompute, price_save, prices_import_litellm
from tests.support.sinks import llm_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(id, model, provider="openai", effective=T0, inp="1", out="2", cached=None, reasoning=None, per_request="0"):
    return PriceRow(
        id=id,
        provider=provider,
        model=model,
        input_per_million=Decimal(inp),
        output_per_million=Decimal(out),
        cached_input_per_million=Decimal(cached) if cached else None,
        reasoning_per_million=Decimal(reasoning) if reasoning else None,
        per_request=Decimal(per_request),
        currency="USD",
        effective_from=effective,
    )


def test_exact_beats_pattern_and_the_most_specific_pattern_wins():
    rows = [row(1, "gpt-*"), row(2, "gpt-4o*"), row(3, "gpt-4o-mini"), row(4, "*", provider="")]
    at = T0 + timedelta(days=1)
    assert match_price(rows, provider="openai", model="gpt-4o-mini", at=at).id == 3
    assert match_price(rows, provider="openai", model="gpt-4o-2024-08-06", at=at).id == 2
    assert match_price(rows, provider="openai", model="gpt-3.5-turbo", at=at).id == 1
    assert match_price(rows, provider="anthropic", model="claude-3-5-sonnet", at=at).id == 4
    # a provider prefix in the model string still finds the row
    assert match_price(rows, provider="openai", model="openai/gpt-4o-mini", at=at).id == 3


def test_provider_specific_row_beats_any_provider_row():
    rows = [row(1, "llama-3", provider=""), row(2, "llama-3", provider="groq")]
    at = T0 + timedelta(days=1)
    assert match_price(rows, provider="groq", model="llama-3", at=at).id == 2
    assert match_price(rows, provider="together", model="llama-3", at=at).id == 1
    assert match_price([row(3, "llama-3", provider="groq")], provider="together", model="llama-3", at=at) is None


def test_latest_effective_price_not_after_the_call_time():
    rows = [row(1, "gpt-4o", effective=T0), row(2, "gpt-4o", effective=T0 + timedelta(days=10))]
    assert match_price(rows, provider="openai", model="gpt-4o", at=T0 + timedelta(days=5)).id == 1
    assert match_price(rows, provider="openai", model="gpt-4o", at=T0 + timedelta(days=11)).id == 2
    assert match_price(rows, provider="openai", model="gpt-4o", at=T0 - timedelta(days=1)) is None
    # an exact price that is not effective yet falls back to a pattern that is
    rows.append(row(3, "gpt-*", effective=T0 - timedelta(days=30)))
    assert match_price(rows, provider="openai", model="gpt-4o", at=T0 - timedelta(days=1)).id == 3


def test_cost_by_token_kind():
    price = row(1, "o3", inp="2", out="8", cached="0.5", reasoning="10", per_request="0.001")
    tokens = Tokens(input=1_000_000, output=500_000, cached=400_000, reasoning=100_000)
    # 600k plain input x 2 + 400k cached x 0.5 + 400k plain output x 8 + 100k reasoning x 10, per million, + 0.001
    assert compute_cost(price, tokens) == Decimal("1.2") + Decimal("0.2") + Decimal("3.2") + Decimal("1") + Decimal(
        "0.001"
    )
    plain = row(2, "gpt", inp="3", out="15")  # no cached/reasoning price: plain prices apply
    assert compute_cost(plain, Tokens(input=1000, output=1000, cached=500, reasoning=500)) == Decimal("0.018")
    assert isinstance(compute_cost(plain, Tokens(input=1, output=1)), Decimal)


@pytest.mark.django_db
def test_llm_call_gets_a_cost_record_and_the_response_gets_the_cost(user):
    with bind_caller(user_id=user.pk, agent_id=5, api_key_id=9, run_id="r1", experiment_id=4):
        annotations = hub.emit_llm_call(llm_record(input_tokens=2000, output_tokens=1000))
    assert annotations["cost"] == Decimal("0.0025")  # mock demo price 0.50 / 1.50 per million
    assert not CostRecord.objects.exists()  # buffered, written at flush
    hub.flush()
    record = CostRecord.objects.get()
    assert record.cost == Decimal("0.0025") and not record.unpriced
    assert record.price.model == "mock/*"
    assert (record.user_id, record.agent_id, record.api_key_id, record.run_id, record.experiment_id) == (
        user.pk, 5, 9, "r1", 4,
    )  # fmt: skip
    assert record.span_id and record.trace_id


@pytest.mark.django_db
def test_unbillable_attempts_get_no_cost_record():
    hub.emit_llm_call(llm_record(model="gpt-4o", provider="openai", billable=False))
    cached = llm_record()
    cached.cache_hit = True
    hub.emit_llm_call(cached)
    hub.flush()
    assert not CostRecord.objects.exists()


def test_billing_is_a_property_of_the_call():
    assert llm_record(provider="openai").is_billed
    assert not llm_record(provider="openai", billable=False).is_billed
    assert llm_record(provider="mock", billable=False).is_billed, "the demo shows costs"
    assert not llm_record(provider="mock", status="error").is_billed
    cached = llm_record(provider="openai")
    cached.cache_hit = True
    assert not cached.is_billed


@pytest.mark.django_db
def test_the_costs_app_prices_through_the_hub():
    usage = {"at": T0, "input_tokens": 2000, "output_tokens": 1000, "cached_tokens": 0, "reasoning_tokens": 0}
    assert hub.pricer(provider="mock", model="mock/demo", **usage) == Decimal("0.0025")  # registered in ready()
    assert hub.pricer(provider="acme", model="acme/secret-model", **usage) is None


@pytest.mark.django_db
def test_unpriced_model_is_flagged_not_a_crash(admin_client):
    annotations = hub.emit_llm_call(llm_record(model="acme/secret-model", provider="acme"))
    assert "cost" not in annotations
    hub.flush()
    record = CostRecord.objects.get()
    assert record.unpriced and record.cost == 0 and record.price is None
    page = admin_client.get("/admin/costs/costrecord/?unpriced__exact=1")
    assert page.status_code == 200 and "acme/secret-model" in page.content.decode()


@pytest.mark.django_db
def test_recompute_after_a_price_correction(admin_client):
    hub.emit_llm_call(llm_record(model="acme/model", provider="acme", input_tokens=1_000_000, output_tokens=0))
    hub.flush()
    assert CostRecord.objects.get().unpriced
    price_save(
        price=Price(
            provider="acme", model="acme/*", input_per_million=Decimal("3"), effective_from=T0 - timedelta(days=1)
        )
    )
    record = CostRecord.objects.get()
    response = admin_client.post(
        "/admin/costs/costrecord/",
        {"action": "recompute_costs", "_selected_action": [record.pk]},
        follow=True,
    )
    assert response.status_code == 200 and "1 changed" in response.content.decode()
    record.refresh_from_db()
    assert not record.unpriced and record.cost == Decimal("3") and record.price.model == "acme/*"
    result = cost_records_recompute(start=record.created_at, end=record.created_at + timedelta(seconds=1))
    assert result == {"records": 1, "changed": 0, "days": 0}


FAKE_COST_MAP = {
    "sample_spec": {"input_cost_per_token": 0},
    "acme-gpt": {
        "litellm_provider": "openai",
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
    },
    "claude-x": {"litellm_provider": "anthropic", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
    "embedding-only": {"litellm_provider": "openai", "mode": "embedding"},
}


@pytest.mark.django_db
def test_import_prices_never_overwrites_manual_rows():
    Price.objects.create(provider="anthropic", model="claude-x", input_per_million=Decimal("1"), source="manual")
    first = prices_import_litellm(cost_map=FAKE_COST_MAP)
    assert (first.created, first.skipped_manual, first.skipped_invalid) == (1, 1, 1)
    gpt = Price.objects.get(model="acme-gpt")
    assert gpt.source == "litellm" and gpt.input_per_million == Decimal("2.5") and gpt.cached_input_per_million == 1.25
    assert Price.objects.get(model="claude-x").input_per_million == Decimal("1")
    changed = {**FAKE_COST_MAP, "acme-gpt": {**FAKE_COST_MAP["acme-gpt"], "input_cost_per_token": 2e-06}}
    second = prices_import_litellm(cost_map=changed)
    assert (second.created, second.updated) == (0, 1)
    assert Price.objects.filter(model="acme-gpt").order_by("effective_from").last().input_per_million == Decimal("2")
    assert Price.history.filter(model="acme-gpt").count() == 2  # every change is kept
    assert Price.objects.get(model="claude-x").input_per_million == Decimal("1")


@pytest.mark.django_db
def test_import_prices_command_reads_litellms_bundled_map():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("import_prices", stdout=out)
    assert "created" in out.getvalue()
    assert Price.objects.filter(source="litellm", model="gpt-4o", provider="openai").exists()


@pytest.mark.django_db
def test_price_admin_edit_of_an_imported_row_makes_it_manual(admin_client):
    price = Price.objects.create(provider="openai", model="gpt-x", input_per_million=1, source="litellm")
    data = {
        "provider": "openai", "model": "gpt-x", "input_per_million": "4", "output_per_million": "0",
        "per_request": "0", "currency": "USD", "effective_from_0": "2026-01-01", "effective_from_1": "00:00:00",
        "source": "litellm", "notes": "",
    }  # fmt: skip
    response = admin_client.post(f"/admin/costs/price/{price.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    price.refresh_from_db()
    assert price.source == "manual" and price.input_per_million == 4


@pytest.mark.django_db
def test_prices_api_lists_the_table(key_client):
    response = key_client.get("/api/v1/prices/?provider=mock")
    assert response.status_code == 200
    (mock,) = response.json()["results"]
    assert mock["model"] == "mock/*" and mock["is_pattern"] and mock["input_per_million"] == "0.5000000000"


@pytest.mark.django_db(transaction=True)
async def test_inside_an_event_loop_a_cold_price_cache_is_not_loaded_but_the_record_is_priced_at_flush():
    from asgiref.sync import sync_to_async

    from costs.observer import observer

    annotations = hub.emit_llm_call(llm_record(input_tokens=1_000_000, output_tokens=0))
    assert "cost" not in annotations  # no query on the hot path inside the loop, so the price is not known yet
    hub.flush()  # in the loop: handed to the background writer
    await sync_to_async(observer.buffer.wait)()
    record = await CostRecord.objects.aget()
    assert record.cost == Decimal("0.5") and not record.unpriced
